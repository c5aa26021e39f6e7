"""The websocket endpoint: one `Client` per connection, between aiohttp and the relay.

Frames for a client are queued by the hub without waiting; a writer task per client drains the
queue. A client whose queue passes its byte or frame limit is closed with 4008 ("slow: reconnect
and resume") instead of holding memory or anyone else back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque

from aiohttp import WSMsgType, web

from feed import protocol
from feed.clock import Clock
from feed.errors import CloseCode, FeedError, LimitExceeded
from feed.protocol import Ping, Subscribe, Unsubscribe
from feed.relay import Relay
from feed.settings import Settings

log = logging.getLogger(__name__)

MAX_ERRORS = 20  # invalid messages from one connection before it is closed with 1008
CLOSE_TIMEOUT = 1.0  # seconds a peer has to take its close frame before it is let go...
SLOW_CLOSE_TIMEOUT = 5.0  # ...or a slow one, which may still be reading what came before
SUBSCRIBE_BURST = 20  # subscribe/unsubscribe messages a connection may send at once...
SUBSCRIBE_RATE = 2.0  # ...and per second after that
URGENT = frozenset({CloseCode.SLOW, CloseCode.GOING_AWAY})
_ids = itertools.count(1)


class Client:
    """A connected websocket client: the hub's `Sink`, with its bounded outbound queue."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.BaseTransport | None,
        max_bytes: int,
        max_frames: int,
    ) -> None:
        self.id = next(_ids)
        self.ws = ws
        self.channels: set[str] = set()
        self.errors = 0
        self.close_code: CloseCode | None = None
        self.close_reason = ""
        self._transport = transport
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._max_bytes = max_bytes
        self._max_frames = max_frames
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._draining = False  # the writer waits for the socket to take more
        self._tokens = float(SUBSCRIBE_BURST)
        self._tokens_at = time.monotonic()

    def send(self, frame: bytes) -> None:
        if self.close_code is not None:
            return
        # Slow means the socket refuses more while the queue is over its limits. A burst the
        # writer has simply not reached yet (a big resume, a snapshot larger than the byte
        # limit) is not slowness: closing then would lock the client out for good.
        if self._draining and (
            len(self._queue) >= self._max_frames
            or self._queued_bytes + len(frame) > self._max_bytes
        ):
            self.close(CloseCode.SLOW, "slow: reconnect and resume")
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        self._wake.set()

    def close(self, code: CloseCode, reason: str) -> None:
        """Close once what is queued has gone out; or at once, dropping the queue, for a slow
        client and on shutdown (the client resumes from its last position either way)."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        self._wake.set()
        if code == CloseCode.SLOW:
            log.info("client %d is too slow (%d bytes unsent); closing with 4008", self.id,
                     self._queued_bytes)  # fmt: skip
        if code in URGENT:
            self._queue.clear()
            self._queued_bytes = 0
            # The writer may wait on a socket that never drains; cancelling it there would break
            # aiohttp's flow control, so the socket is let go instead when the grace runs out.
            asyncio.get_running_loop().call_later(self._grace(), self.abort)

    def _grace(self) -> float:
        return SLOW_CLOSE_TIMEOUT if self.close_code == CloseCode.SLOW else CLOSE_TIMEOUT

    def may_subscribe(self) -> bool:
        """A token bucket for subscribe and unsubscribe messages."""
        now = time.monotonic()
        self._tokens = min(SUBSCRIBE_BURST, self._tokens + (now - self._tokens_at) * SUBSCRIBE_RATE)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def start_writer(self) -> asyncio.Task[None]:
        self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.id}")
        return self._writer

    async def _write(self) -> None:
        """Drain the queue to the socket until the client is closed, then close it."""
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
        except (ConnectionError, RuntimeError):
            return  # the socket is gone (the peer left, or it was let go)
        assert self.close_code is not None
        # Not wait_for: cancelling aiohttp's close can itself wait on a deaf peer. Give the close
        # frame its time, then let go of the socket, which also ends the close.
        closing = asyncio.ensure_future(
            ws.close(code=self.close_code, message=self.close_reason.encode())
        )
        await asyncio.wait({closing}, timeout=self._grace())
        self.abort()
        closing.add_done_callback(_quietly)

    def abort(self) -> None:
        """Let go of a peer that did not take its close frame in time: frees the socket."""
        if isinstance(self._transport, asyncio.WriteTransport):
            self._transport.abort()  # also when closing: it may be flushing to a deaf peer


def _quietly(task: asyncio.Future[bool]) -> None:
    """Collect the outcome of a close that no one waits for any more."""
    if not task.cancelled():
        task.exception()


async def handle(
    request: web.Request, relay: Relay, clients: set[Client], settings: Settings, clock: Clock
) -> web.StreamResponse:
    # No permessage-deflate: it would compress every frame once per client, defeating the
    # encode-once fan-out; JSON messages here are small.
    ws = web.WebSocketResponse(
        heartbeat=25.0,
        # aiohttp refuses a message whose size reaches max_msg_size; ours may be exactly the limit.
        max_msg_size=protocol.MAX_FRAME_BYTES + 1,
        compress=False,
    )
    await ws.prepare(request)
    client = Client(
        ws, request.transport, settings.client_queue_bytes, settings.client_queue_frames
    )
    clients.add(client)
    writer = client.start_writer()
    client.send(protocol.hello(clock.ms(), relay.live, clock.rate))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                _receive(client, relay, msg.data, clock)
            elif msg.type == WSMsgType.BINARY:
                client.close(CloseCode.UNSUPPORTED, "send JSON text frames")
            if client.close_code is not None:
                break
    finally:
        clients.discard(client)
        relay.unsubscribe(client, client.channels)
        client.close(CloseCode.NORMAL, "")  # no-op when a close is already under way
        try:
            # The writer sends what is queued (an error, a close frame) and closes.
            await asyncio.wait_for(asyncio.shield(writer), SLOW_CLOSE_TIMEOUT + 1)
        except (TimeoutError, ConnectionError, RuntimeError):
            writer.cancel()
            client.abort()
    return ws


def _receive(client: Client, relay: Relay, data: str, clock: Clock) -> None:
    try:
        msg = protocol.parse_client(data)
        if isinstance(msg, Subscribe | Unsubscribe) and not client.may_subscribe():
            raise LimitExceeded(
                f"too many subscribe/unsubscribe messages: at most {SUBSCRIBE_BURST} at once,"
                f" then {SUBSCRIBE_RATE:g} per second"
            )
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
            client.send(protocol.pong(clock.ms()))
    except FeedError as exc:
        client.errors += 1
        client.send(protocol.error(exc.code, exc.message))
        if client.errors >= MAX_ERRORS:
            client.close(CloseCode.POLICY, "too many invalid messages")
    except Exception:
        # A bug must cost at most this connection, never the process or the other clients.
        log.exception("unexpected error handling a message from client %d", client.id)
        client.close(CloseCode.INTERNAL, "internal error; reconnect")
