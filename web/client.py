"""A connected client, as the hub sees it (its `Sink`): `send` never blocks nor awaits.

`Client` holds what every transport shares: pending output, the byte limit past which a client
is closed as slow (4008, "reconnect and resume"), closing, the subscribe rate. What goes on the
wire, and how a connection is closed, is the transport's: `WebSocketClient` here, and
`web.sse.SseClient` for Server-Sent Events.

What a client has not taken yet stays in its socket's write buffer. A client whose buffer is over
its byte limit when more is to be written is closed with 4008 and comes back through its
`(epoch, seq)`, instead of holding memory or anyone else back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Protocol, cast

from aiohttp import web

from feed.errors import CloseCode
from web.outbox import Outbox

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 1.0  # seconds a peer has to take its close frame before it is let go...
SLOW_CLOSE_TIMEOUT = 5.0  # ...or a slow one, which may still be reading what came before
SUBSCRIBE_BURST = 20  # subscribe/unsubscribe messages a connection may send at once...
SUBSCRIBE_RATE = 2.0  # ...and per second after that
URGENT = frozenset({CloseCode.SLOW, CloseCode.GOING_AWAY})
_FULL_BUCKET = float(SUBSCRIBE_BURST)
_ids = itertools.count(1)


class Presence(Protocol):
    """Who is watching (web.presence): told of acknowledgements and departures."""

    def ack(self, client: Client, announcement_id: str) -> None: ...

    def left(self, client: Client) -> None: ...


class Client:
    """A connected client: the hub's `Sink`. `send` never blocks nor awaits. Its transport
    (a subclass) says how messages go on the wire (`_encode`, `_wrap`) and how it closes."""

    # Slots, and nothing made before it is needed (the acks, the closed future): a venue holds
    # tens of thousands of these, and every byte here is multiplied (docs/performance.md).
    __slots__ = (
        "_acked", "_close_done", "_closed_future", "_max_bytes", "_out", "_outbox",
        "_tokens", "_tokens_at", "_transport", "channels", "close_code", "close_reason",
        "errors", "id", "kind", "rooms", "screen", "token_id",
    )  # fmt: skip

    def __init__(
        self,
        transport: asyncio.BaseTransport | None,
        outbox: Outbox,
        max_bytes: int,
        *,
        kind: str = "other",
    ) -> None:
        self.id = next(_ids)
        self.kind = kind  # screen, phone, console or other: what the page said it is
        # A screen's name, to find it at the venue: only a screen token gives one (`identify`).
        self.screen: str | None = None
        self.token_id: str | None = None  # the screen token that named it, to notice a revoke
        self.rooms: tuple[str, ...] = ()  # where that token says the screen stands
        self._acked: set[str] | None = None  # announcements this screen said it shows
        self.channels: set[str] = set()
        self.errors = 0
        self.close_code: CloseCode | None = None
        self.close_reason = ""
        self._closed_future: asyncio.Future[None] | None = None
        self._close_done = False
        # Any loop's transport (uvloop's are not asyncio.WriteTransport by type).
        self._transport = cast(asyncio.WriteTransport | None, transport)
        self._outbox = outbox
        self._out: list[bytes] = []  # frames for the next write
        self._max_bytes = max_bytes
        # A full bucket (shared float objects: no clock read, nothing allocated per client).
        self._tokens = _FULL_BUCKET
        self._tokens_at = 0.0

    @property
    def acked(self) -> set[str]:
        """Announcements this screen said it shows (made at the first look: phones never ack)."""
        if self._acked is None:
            self._acked = set()
        return self._acked

    @property
    def closed(self) -> asyncio.Future[None]:
        """Done once the connection's close has run its course."""
        if self._closed_future is None:
            self._closed_future = asyncio.get_running_loop().create_future()
            if self._close_done:
                self._closed_future.set_result(None)
        return self._closed_future

    def send(self, frame: bytes) -> None:
        if self.close_code is not None:
            return
        if not self._out:
            self._outbox.pending(self)
        self._out.append(self._encode(frame))

    def _encode(self, frame: bytes) -> bytes:
        """A message as it goes on the wire (the transport's: see the subclasses)."""
        return frame

    def _wrap(self, data: bytes) -> bytes:
        """What one write carries around its messages (nothing, unless the transport says)."""
        return data

    def flush(self) -> None:
        """Write the pending frames in one go; a client that has not taken what it was given
        before, past its byte limit, is closed as slow instead."""
        out = self._out  # the same list every time: nothing for the garbage collector
        transport = self._transport
        try:
            if not out or transport is None or transport.is_closing():
                return
            # Only what the client left unread counts: a burst handed to a client that keeps up
            # (a big resume, a snapshot larger than the limit) goes out whole.
            if transport.get_write_buffer_size() > self._max_bytes:
                out.clear()
                self.close(CloseCode.SLOW, "slow: reconnect and resume")
                return
            transport.write(self._wrap(out[0] if len(out) == 1 else b"".join(out)))
        finally:
            out.clear()  # else `send` would take the client for pending and never write again

    def close(self, code: CloseCode, reason: str) -> None:
        """Close after what is pending has been written; or at once, dropping it, for a slow
        client and on shutdown (the client resumes from its last position either way)."""
        if self.close_code is not None:
            return
        if code in URGENT:
            self._out.clear()
            if code == CloseCode.SLOW:
                self._outbox.slow_closes += 1
                log.info(
                    "client %d is too slow (%d bytes unread); closing with 4008",
                    self.id, self._unread(), extra={"conn": self.id},
                )  # fmt: skip
        else:
            self.flush()
            if self.close_code is not None:
                return  # that last write found the client too slow: it is closing as such
        self.close_code, self.close_reason = code, reason
        asyncio.ensure_future(self._close()).add_done_callback(self._closed)

    def _closed(self, _: asyncio.Future[None]) -> None:
        self._close_done = True
        if self._closed_future is not None and not self._closed_future.done():
            self._closed_future.set_result(None)

    def _unread(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport else 0

    async def _close(self) -> None:
        """End the connection with `close_code`, as the transport does (see the subclasses)."""
        self.abort()

    def abort(self) -> None:
        """Let go of a peer that did not take its close frame in time: frees the socket."""
        if self._transport is not None:
            self._transport.abort()  # also when closing: it may be flushing to a deaf peer

    def may_subscribe(self) -> bool:
        """A token bucket for subscribe and unsubscribe messages."""
        now = time.monotonic()
        self._tokens = min(SUBSCRIBE_BURST, self._tokens + (now - self._tokens_at) * SUBSCRIBE_RATE)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class WebSocketClient(Client):
    """A websocket connection: each message one text frame, built once for everyone (Outbox),
    and a close frame with the close code."""

    __slots__ = ("ws",)

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.BaseTransport | None,
        outbox: Outbox,
        max_bytes: int,
        *,
        kind: str = "other",
    ) -> None:
        super().__init__(transport, outbox, max_bytes, kind=kind)
        self.ws = ws

    def _encode(self, frame: bytes) -> bytes:
        return self._outbox.frame(frame)

    async def _close(self) -> None:
        assert self.close_code is not None
        grace = SLOW_CLOSE_TIMEOUT if self.close_code == CloseCode.SLOW else CLOSE_TIMEOUT
        # Not wait_for: cancelling aiohttp's close can itself wait on a deaf peer. Give the close
        # frame its time, then let go of the socket, which also ends the close.
        closing = asyncio.ensure_future(
            self.ws.close(code=self.close_code, message=self.close_reason.encode())
        )
        await asyncio.wait({closing}, timeout=grace)
        self.abort()
        closing.add_done_callback(_quietly)


def _quietly(task: asyncio.Future[bool]) -> None:
    """Collect the outcome of a close that no one waits for any more."""
    if not task.cancelled():
        task.exception()
