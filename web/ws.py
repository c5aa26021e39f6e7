"""The websocket endpoint: one `Client` per connection, between aiohttp and the relay.

The fan-out path never waits on a client. The hub hands every subscriber of an event the same
bytes; the `Outbox` frames them as a websocket text frame once, and each `Client` only appends
the frame to its list of pending output. Once per turn of the event loop, after everything that
arrived in that turn has been handed out, the outbox writes each client's pending frames to its
socket in one write (a burst of events becomes one write per client, not one per event).

What a client has not taken yet stays in its socket's write buffer. A client whose buffer is over
its byte limit when more is to be written is closed with 4008 ("slow: reconnect and resume") and
comes back through its `(epoch, seq)`, instead of holding memory or anyone else back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, cast

from aiohttp import WSMsgType, web

from feed import keys, protocol, zones
from feed.clock import Clock
from feed.errors import (
    CloseCode,
    FeedError,
    Forbidden,
    InvalidMessage,
    LimitExceeded,
    NotFound,
    RateLimited,
)
from feed.protocol import Ack, Identify, Ping, Position, Subscribe, Unsubscribe
from feed.relay import Relay
from feed.settings import Settings
from publisher import tokens
from web.admission import Admission
from web.latency import Histogram

log = logging.getLogger(__name__)

MAX_ERRORS = 20  # invalid messages from one connection before it is closed with 1008
CLOSE_TIMEOUT = 1.0  # seconds a peer has to take its close frame before it is let go...
SLOW_CLOSE_TIMEOUT = 5.0  # ...or a slow one, which may still be reading what came before
SUBSCRIBE_BURST = 20  # subscribe/unsubscribe messages a connection may send at once...
SUBSCRIBE_RATE = 2.0  # ...and per second after that
URGENT = frozenset({CloseCode.SLOW, CloseCode.GOING_AWAY})
_FULL_BUCKET = float(SUBSCRIBE_BURST)
_ENDS = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})
FRAMED_CACHE = 256  # recent frames kept framed, for the next subscribers of the same event
_ids = itertools.count(1)


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked websocket text frame (RFC 6455 5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class Outbox:
    """Framing once per message and one write per client per turn of the event loop."""

    def __init__(self) -> None:
        # The hub gives every subscriber of an event the very same bytes object: remember its
        # frame by identity. Keeping the payload in the entry keeps its id from being reused.
        self._framed: dict[int, tuple[bytes, bytes]] = {}
        self._dirty: list[Client] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._since = 0.0  # when the first frame of this turn was handed out
        self.writes = 0
        self.slow_closes = 0
        self.fanout = Histogram()

    def frame(self, payload: bytes) -> bytes:
        hit = self._framed.get(id(payload))
        if hit is not None and hit[0] is payload:
            return hit[1]
        framed = text_frame(payload)
        if len(self._framed) >= FRAMED_CACHE:
            self._framed.clear()
        self._framed[id(payload)] = (payload, framed)
        return framed

    def pending(self, client: Client) -> None:
        """`client` has output: write it at the end of this turn of the loop."""
        if not self._dirty:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self.flush)
            self._since = time.perf_counter()
        self._dirty.append(client)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for client in dirty:
            try:
                client.flush()
            except Exception:
                # One client's failure must not keep the others from their writes.
                log.exception(
                    "writing to client %d failed; dropping it", client.id, extra={"conn": client.id}
                )
                client.abort()
        self.writes += len(dirty)
        self.fanout.observe(time.perf_counter() - self._since)


class Presence(Protocol):
    """Who is watching (web.presence): told of acknowledgements and departures."""

    def ack(self, client: Client, announcement_id: str) -> None: ...

    def left(self, client: Client) -> None: ...


class Gate:
    """Who may open a websocket here: pages of allowed origins, and at most so many connections
    from one address at once."""

    def __init__(
        self,
        allowed_origins: frozenset[str],
        per_address: int,
        trusted_proxies: frozenset[str] = frozenset(),
    ) -> None:
        self.allowed_origins = allowed_origins
        self.per_address = per_address
        self.trusted_proxies = trusted_proxies
        self.open: dict[str, int] = {}  # address -> connections open from it

    def client_address(self, request: web.Request) -> str:
        """The client's address: the peer's, or, from a trusted proxy, the last address in
        X-Forwarded-For that is not itself a trusted proxy."""
        address = request.remote or "?"
        if address not in self.trusted_proxies:
            return address
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            if hop not in self.trusted_proxies:
                return hop
        return address

    def admit(self, request: web.Request) -> str:
        """Check a websocket request before it is upgraded; returns the address to `leave` with.
        Raises Forbidden (403) for a page of another origin, RateLimited (429) for an address
        over its limit."""
        origin = request.headers.get("Origin")
        # Browsers always send Origin on websockets; other clients (screens' players, scripts)
        # need not, and cannot be tricked into connecting by a page, so they are let in.
        if origin is not None and not self._origin_ok(origin.rstrip("/").lower(), request):
            raise Forbidden(
                f"websocket connections from pages of {origin!r} are not allowed here"
                " (FEED_ALLOWED_ORIGINS)"
            )
        address = self.client_address(request)
        if self.per_address and self.open.get(address, 0) >= self.per_address:
            raise RateLimited(
                f"too many connections from {address}: at most {self.per_address} at once",
                retry_after=5,
            )
        self.open[address] = self.open.get(address, 0) + 1
        return address

    def leave(self, address: str) -> None:
        left = self.open.get(address, 0) - 1
        if left > 0:
            self.open[address] = left
        else:
            self.open.pop(address, None)

    def _origin_ok(self, origin: str, request: web.Request) -> bool:
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        # The server's own pages: the origin names the host the request was sent to (as a
        # trusted proxy forwarded it; a proxy may also have dropped the port from Host).
        named = origin.partition("://")[2]
        if not named:  # "null" (a sandboxed frame, a file): no host of ours
            return False
        hosts = {request.host.lower()}
        forwarded = request.headers.get("X-Forwarded-Host", "").lower()
        if forwarded and (request.remote or "") in self.trusted_proxies:
            hosts.add(forwarded)
        return named in hosts or (":" not in request.host and named.split(":")[0] in hosts)


class Client:
    """A connected client: the hub's `Sink`. `send` never blocks nor awaits. This class speaks
    websocket; web.sse.SseClient changes only how messages are put on the wire and closed."""

    # Slots, and nothing made before it is needed (the acks, the closed future): a venue holds
    # tens of thousands of these, and every byte here is multiplied (docs/performance.md).
    __slots__ = (
        "_acked", "_close_done", "_closed_future", "_max_bytes", "_out", "_outbox",
        "_tokens", "_tokens_at", "_transport", "channels", "close_code", "close_reason",
        "errors", "id", "kind", "rooms", "screen", "token_id", "ws",
    )  # fmt: skip

    def __init__(
        self,
        ws: web.WebSocketResponse | None,
        transport: asyncio.BaseTransport | None,
        outbox: Outbox,
        max_bytes: int,
        *,
        kind: str = "other",
        screen: str | None = None,
    ) -> None:
        self.id = next(_ids)
        self.ws = ws
        self.kind = kind  # screen, phone, console or other: what the page said it is
        # A screen's name, to find it at the venue: only a screen token gives one (`identify`).
        self.screen = screen
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
        """A message as it goes on the wire: a websocket text frame, built once for everyone."""
        return self._outbox.frame(frame)

    def _wrap(self, data: bytes) -> bytes:
        """What one write carries around its messages (nothing, on a websocket)."""
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
        assert self.close_code is not None and self.ws is not None
        grace = SLOW_CLOSE_TIMEOUT if self.close_code == CloseCode.SLOW else CLOSE_TIMEOUT
        # Not wait_for: cancelling aiohttp's close can itself wait on a deaf peer. Give the close
        # frame its time, then let go of the socket, which also ends the close.
        closing = asyncio.ensure_future(
            self.ws.close(code=self.close_code, message=self.close_reason.encode())
        )
        await asyncio.wait({closing}, timeout=grace)
        self.abort()
        closing.add_done_callback(_quietly)

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


def _quietly(task: asyncio.Future[bool]) -> None:
    """Collect the outcome of a close that no one waits for any more."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True, slots=True)
class Parts:
    """What the websocket and the SSE endpoints are served with (built by web.app)."""

    relay: Relay
    clients: set[Client]
    outbox: Outbox
    gate: Gate
    presence: Presence
    settings: Settings
    clock: Clock
    admission: Admission


def venue_time(parts: Parts, relay: Relay, clock: Clock) -> dict[str, object]:
    """The venue's zone (FEED_VENUE_ZONE, else the program's, else UTC) with its offsets, for
    the hello: the server, not the browser's tz database, is the authority on venue time."""
    zone = parts.settings.venue_zone or relay.program_zone or "UTC"
    return zones.venue(zone, clock.ms())


async def handle(request: web.Request, parts: Parts) -> web.StreamResponse:
    kind, screen = identity(request)  # a bad ?screen= is refused before anything else
    address = parts.gate.admit(request)
    try:
        return await _serve(request, parts, kind, screen)
    finally:
        parts.gate.leave(address)


KINDS = ("screen", "phone", "console")


def identity(request: web.Request) -> tuple[str, str | None]:
    """What a client says it is: `?kind=screen|phone|console`, for the counts only. `?screen=`
    (from before screen tokens) still says `kind=screen`, and is still checked, but names
    nothing: a screen's name is a claim only its screen token makes (`identify`)."""
    screen = request.query.get("screen") or None
    if screen is not None:
        keys.screen_name(screen)
    kind = "screen" if screen else request.query.get("kind", "other")
    return (kind if kind in KINDS else "other"), None


async def _serve(
    request: web.Request, parts: Parts, kind: str, screen: str | None
) -> web.StreamResponse:
    relay, clients, presence, clock = parts.relay, parts.clients, parts.presence, parts.clock
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
        ws,
        request.transport,
        parts.outbox,
        parts.settings.client_queue_bytes,
        kind=kind,
        screen=screen,
    )
    clients.add(client)
    client.send(protocol.hello(clock.ms(), relay.live, clock.rate, venue_time(parts, relay, clock)))
    try:
        while True:
            # receive() itself rather than `async for`: one coroutine less held by every idle
            # connection. It ends where aiohttp's iterator ends.
            msg = await ws.receive()
            if msg.type in _ENDS:
                break
            if msg.type == WSMsgType.TEXT:
                token = _receive(client, parts, msg.data)
                if token is not None:  # the next message waits: it may be an ack of this screen
                    await _identify(client, relay, token)
            elif msg.type == WSMsgType.BINARY:
                client.close(CloseCode.UNSUPPORTED, "send JSON text frames")
            if client.close_code is not None:
                break
    finally:
        clients.discard(client)
        presence.left(client)
        parts.admission.cancel(client)
        relay.unsubscribe(client, client.channels)
        client.close(CloseCode.NORMAL, "")  # no-op when a close is already under way
        try:
            await asyncio.wait_for(asyncio.shield(client.closed), SLOW_CLOSE_TIMEOUT + 1)
        except TimeoutError:
            client.abort()
    return ws


def follow(
    client: Client, parts: Parts, channels: Iterable[str], since: Mapping[str, Position]
) -> None:
    """Subscribe `client` to the channels it may follow, within the server's budget of new
    subscriptions (web.admission), and tell it which it may not (rooms not in the program): the
    others are followed, so a mistyped room keeps the venue's news."""
    relay = parts.relay
    unknown = [c for c in channels if not relay.allowed(c)]
    wanted = [c for c in channels if c not in unknown]
    client.channels.update(wanted)
    parts.admission.subscribe(client, wanted, since)
    if unknown:
        client.errors += 1
        names = ", ".join(c.removeprefix(keys.ROOM_PREFIX) for c in unknown)
        client.send(
            protocol.error(
                NotFound.code,
                f"no room {names} in the program (GET /api/schedule lists its rooms)",
                channels=unknown,
            )
        )


async def _identify(client: Client, relay: Relay, presented: str) -> None:
    """A screen names itself with its screen token: from now on it is listed by that name, and
    its acks are receipts. Any other token is refused: staff tokens stay in the console."""
    try:
        if client.token_id is not None:
            raise InvalidMessage(f"this connection is already screen {client.screen!r}")
        token = await tokens.verify(relay.bus, presented)
        if token.role != tokens.Role.SCREEN:
            raise Forbidden("only a screen token names a screen; staff tokens stay in the console")
    except FeedError as exc:
        _refuse(client, exc)
        return
    client.screen, client.token_id, client.rooms = token.name, token.id, token.rooms
    client.kind = "screen"
    client.send(protocol.identified(token.name, list(token.rooms)))


def _refuse(client: Client, exc: FeedError) -> None:
    client.errors += 1
    client.send(protocol.error(exc.code, exc.message))
    if client.errors >= MAX_ERRORS:
        client.close(CloseCode.POLICY, "too many invalid messages")


def _receive(client: Client, parts: Parts, data: str) -> str | None:
    """Handle one message at once; an `identify` needs Redis: its token is returned, for the
    caller to check before it reads the next message."""
    relay, presence, clock = parts.relay, parts.presence, parts.clock
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
            follow(client, parts, msg.channels, msg.since)
        elif isinstance(msg, Unsubscribe):
            parts.admission.cancel(client, msg.channels)
            relay.unsubscribe(client, msg.channels)
            client.channels.difference_update(msg.channels)
            client.send(protocol.unsubscribed(msg.channels))
        elif isinstance(msg, Ping):
            client.send(protocol.pong(clock.ms()))
        elif isinstance(msg, Ack):
            known = msg.id in client.acked or relay.shows(client.channels, msg.id)
            if client.screen is not None and not known:
                raise NotFound(f"no announcement {msg.id!r} on the channels this screen follows")
            presence.ack(client, msg.id)
        elif isinstance(msg, Identify):
            return msg.token
    except FeedError as exc:
        _refuse(client, exc)
    except Exception:
        # A bug must cost at most this connection, never the process or the other clients.
        log.exception(
            "unexpected error handling a message from client %d", client.id,
            extra={"conn": client.id},
        )  # fmt: skip
        client.close(CloseCode.INTERNAL, "internal error; reconnect")
    return None
