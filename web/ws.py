"""The websocket endpoint: one `Client` per connection, between aiohttp and the relay.

Frames for a client are queued by the hub without waiting; a writer task per client drains the
queue. A client whose queue passes its byte or frame limit is closed with 4008 ("slow: reconnect
and resume") instead of holding memory or anyone else back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque

from aiohttp import WSMsgType, web

from feed import protocol
from feed.errors import CloseCode, FeedError, LimitExceeded
from feed.protocol import Ping, Subscribe, Unsubscribe
from feed.relay import Relay
from feed.settings import Settings

log = logging.getLogger(__name__)

MAX_ERRORS = 20  # invalid messages from one connection before it is closed with 1008
CLOSE_TIMEOUT = 2.0
_ids = itertools.count(1)


def now_ms() -> int:
    return int(time.time() * 1000)


class Client:
    """A connected websocket client: the hub's `Sink`, with its bounded outbound queue."""

    def __init__(self, ws: web.WebSocketResponse, max_bytes: int, max_frames: int) -> None:
        self.id = next(_ids)
        self.ws = ws
        self.channels: set[str] = set()
        self.errors = 0
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._max_bytes = max_bytes
        self._max_frames = max_frames
        self._wake = asyncio.Event()
        self.close_code: CloseCode | None = None
        self.close_reason = ""
        self._writer: asyncio.Task[None] | None = None
        self._draining = False

    def send(self, frame: bytes) -> None:
        if self.close_code is not None:
            return
        # Slow means the socket refuses more (the writer waits for it to drain) while the queue
        # is over its byte limit. A burst the writer has simply not reached yet is not slowness:
        # a snapshot bigger than the limit must still go out, or the client could never join.
        if len(self._queue) >= self._max_frames or (
            self._draining and self._queued_bytes + len(frame) > self._max_bytes
        ):
            self._queue.clear()
            self.close(CloseCode.SLOW, "slow: reconnect and resume")
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        self._wake.set()

    def close(self, code: CloseCode, reason: str) -> None:
        """Ask the writer to close the connection once what is queued has gone out; a slow
        client is closed at once, even while the writer waits for its socket to drain."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        self._wake.set()
        if code == CloseCode.SLOW and self._writer is not None:
            self._writer.cancel()

    def start_writer(self) -> asyncio.Task[None]:
        self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.id}")
        return self._writer

    async def _write(self) -> None:
        """Drain the queue to the socket until the client is closed."""
        ws = self.ws
        try:
            while self.close_code is None or self._queue:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    frame = self._queue.popleft()
                    self._queued_bytes -= len(frame)
                    self._draining = True  # stays set only while send_frame waits for the socket
                    await ws.send_frame(frame, WSMsgType.TEXT)
                    self._draining = False
        except asyncio.CancelledError:
            if self.close_code != CloseCode.SLOW:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        # The close frame goes behind what the socket already holds; if the client never reads
        # it, the transport is closed after CLOSE_TIMEOUT anyway.
        assert self.close_code is not None
        await _close(ws, self.close_code, self.close_reason)


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError, RuntimeError):
        await asyncio.wait_for(ws.close(code=code, message=reason.encode()), CLOSE_TIMEOUT)


async def handle(
    request: web.Request, relay: Relay, clients: set[Client], settings: Settings
) -> web.StreamResponse:
    # No permessage-deflate: it would compress every frame once per client, defeating the
    # encode-once fan-out; JSON messages here are small.
    ws = web.WebSocketResponse(
        # aiohttp refuses a message whose size reaches max_msg_size; ours may be exactly the limit.
        heartbeat=25.0,
        max_msg_size=protocol.MAX_FRAME_BYTES + 1,
        compress=False,
    )
    await ws.prepare(request)
    client = Client(ws, settings.client_queue_bytes, settings.client_queue_frames)
    clients.add(client)
    writer = client.start_writer()
    client.send(protocol.hello(now_ms(), relay.live))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                _receive(client, relay, msg.data)
            elif msg.type == WSMsgType.BINARY:
                client.close(CloseCode.UNSUPPORTED, "send JSON text frames")
            if client.close_code is not None:
                break
    finally:
        clients.discard(client)
        relay.unsubscribe(client, client.channels)
        if client.close_code is None:
            client.close(CloseCode.NORMAL, "")
        # Let the writer flush what is queued (an error, a close code) before giving up on it.
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, ConnectionError):
            await asyncio.wait_for(asyncio.shield(writer), CLOSE_TIMEOUT)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            await writer
        if not ws.closed:
            await _close(ws, client.close_code or CloseCode.NORMAL, client.close_reason)
    return ws


def _receive(client: Client, relay: Relay, data: str) -> None:
    try:
        msg = protocol.parse_client(data)
        if isinstance(msg, Subscribe):
            added = [c for c in msg.channels if c not in client.channels]
            if len(client.channels) + len(added) > protocol.MAX_CHANNELS_PER_CONNECTION:
                raise LimitExceeded(
                    f"at most {protocol.MAX_CHANNELS_PER_CONNECTION} channels per connection"
                )
            client.channels.update(msg.channels)
            relay.subscribe(client, msg.channels, msg.since)
        elif isinstance(msg, Unsubscribe):
            relay.unsubscribe(client, msg.channels)
            client.channels.difference_update(msg.channels)
            client.send(protocol.unsubscribed(msg.channels))
        elif isinstance(msg, Ping):
            client.send(protocol.pong(now_ms()))
    except FeedError as exc:
        client.errors += 1
        client.send(protocol.error(exc.code, exc.message))
        if client.errors >= MAX_ERRORS:
            client.close(CloseCode.POLICY, "too many invalid messages")
    except Exception:
        # A bug must cost at most this connection, never the process or the other clients.
        log.exception("unexpected error handling a message from client %d", client.id)
        client.close(CloseCode.INTERNAL, "internal error; reconnect")
