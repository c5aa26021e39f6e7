"""The websocket endpoint: one `WebSocketClient` per connection, between aiohttp and the relay.

It upgrades the request, says hello, and reads the client's messages (subscribe, unsubscribe,
ping, identify, ack) until the connection ends. What is sent goes through the client's pending
output and the outbox (web/client.py, web/outbox.py): nothing here waits on a client to write.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

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
)
from feed.protocol import Ack, Identify, Ping, Position, Subscribe, Unsubscribe
from feed.relay import Relay
from feed.settings import Settings
from publisher import tokens
from web.admission import Admission
from web.client import (
    SLOW_CLOSE_TIMEOUT,
    SUBSCRIBE_BURST,
    SUBSCRIBE_RATE,
    Client,
    Presence,
    WebSocketClient,
)
from web.gate import Gate
from web.middleware import error_response, http_error_response
from web.outbox import Outbox

log = logging.getLogger(__name__)

MAX_ERRORS = 20  # invalid messages from one connection before it is closed with 1008
_ENDS = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})


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


PARTS: web.AppKey[Parts] = web.AppKey("parts")  # set by web.app once they all exist


def venue_time(parts: Parts) -> dict[str, object]:
    """The venue's zone (FEED_VENUE_ZONE, else the program's, else UTC) with its offsets, for
    the hello: the server, not the browser's tz database, is the authority on venue time."""
    zone = parts.settings.venue_zone or parts.relay.program_zone or "UTC"
    return zones.venue(zone, parts.clock.ms())


async def handle(request: web.Request) -> web.StreamResponse:
    """The websocket endpoint. Registered as it is: no wrapper and no middleware frame stays
    alive beside each of the tens of thousands of connections (docs/performance.md), so its
    refusals before the upgrade are answered here, in JSON like every other error."""
    parts = request.app[PARTS]
    try:
        kind = identity(request)  # a bad ?screen= is refused before anything else
        address = parts.gate.admit(request)
    except FeedError as exc:
        return error_response(exc)
    try:
        relay, clients, presence, clock = parts.relay, parts.clients, parts.presence, parts.clock
        # No permessage-deflate: it would compress every frame once per client, defeating the
        # encode-once fan-out; JSON messages here are small.
        ws = web.WebSocketResponse(
            heartbeat=25.0,
            # aiohttp refuses a message whose size reaches max_msg_size; ours may be exactly it.
            max_msg_size=protocol.MAX_FRAME_BYTES + 1,
            compress=False,
        )
        try:
            await ws.prepare(request)
        except web.HTTPException as exc:  # not a websocket handshake
            if exc.status < 400:
                raise
            return http_error_response(request, exc)
        shed(request, ws)
        client = WebSocketClient(
            ws, request.transport, parts.outbox, parts.settings.client_queue_bytes, kind=kind
        )
        clients.add(client)
        # No local for the hello's parts: this frame lives as long as the connection.
        client.send(protocol.hello(clock.ms(), relay.live, clock.rate, venue_time(parts)))
        try:
            while True:
                # receive() itself rather than `async for`: one coroutine less held by every idle
                # connection. It ends where aiohttp's iterator ends.
                msg = await ws.receive()
                if msg.type in _ENDS:
                    break
                if msg.type == WSMsgType.TEXT:
                    token = _receive(client, parts, msg.data)
                    if token is not None:  # the next message waits: it may be this screen's ack
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
    finally:
        parts.gate.leave(address)


KINDS = ("screen", "phone", "console")


def identity(request: web.Request) -> str:
    """What a client says it is: `?kind=screen|phone|console`, for the counts only. `?screen=`
    (from before screen tokens) still says `kind=screen`, and is still checked, but names
    nothing: a screen's name is a claim only its screen token makes (`identify`)."""
    # Read once and let go: aiohttp's `request.query` (and `query_string`) would keep a parsed
    # copy as long as the request lives, which for a websocket is the whole connection. The
    # kind returned is one of ours, not the parsed string: nothing of the query stays.
    _, _, query_string = request.raw_path.partition("?")
    query = dict(parse_qsl(query_string)) if query_string else {}
    screen = query.get("screen") or None
    if screen is not None:
        keys.screen_name(screen)
    kind = "screen" if screen else query.get("kind", "other")
    return _KINDS.get(kind, "other")


_KINDS = {kind: kind for kind in KINDS}
_NO_MESSAGES: deque[Any] = deque(maxlen=0)  # shared: whatever is put in it is dropped


def shed(request: web.Request, ws: web.WebSocketResponse) -> bool:
    """Let go of what aiohttp keeps per connection for HTTP once the websocket is upgraded and
    never uses again: its HTTP parser and its queue of parsed requests (about 1.5 KB), what its
    cached properties remembered, and the websocket writer's masking helper (a server never
    masks). Tens of thousands of idle connections each held them (docs/performance.md).

    These are aiohttp's private attributes (3.14): each is let go only if it is there, as
    expected, so another aiohttp costs memory, never a connection; tests/web/test_shed.py fails
    when they are not found. True when everything was let go."""
    handler = request.protocol
    # aiohttp reads HTTP with its parser only while the connection is not upgraded and has no
    # payload parser (the websocket reader); nothing appends to the queue after that either.
    upgraded = (
        getattr(handler, "_upgraded", None) is True
        and getattr(handler, "_payload_parser", None) is not None
    )
    done = 0
    if upgraded and getattr(handler, "_parser", None) is not None:
        handler._parser = None
        done += 1
    messages = getattr(handler, "_messages", None)
    if upgraded and type(messages) is deque and not messages:
        handler._messages = _NO_MESSAGES
        done += 1
    # What aiohttp's cached properties remembered of the request and its connection (its
    # address, host, path...): recomputed if asked again; the handshake is over.
    for owner in (request, handler):
        cache = getattr(owner, "_cache", None)
        if type(cache) is dict:
            cache.clear()
            done += 1
    writer = getattr(ws, "_writer", None)
    if getattr(writer, "use_mask", None) is False and hasattr(writer, "get_random_bits"):
        writer.get_random_bits = _RANDOM_BITS  # type: ignore[union-attr]
        done += 1
    return done == 5


_RANDOM_BITS = functools.partial(random.getrandbits, 32)  # one for all (unused: no masking)


def subscribe(
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
    except Exception:
        # As in _receive: a bug must cost at most this connection, never the process.
        log.exception("identifying client %d failed", client.id, extra={"conn": client.id})
        client.close(CloseCode.INTERNAL, "internal error; reconnect")
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
            subscribe(client, parts, msg.channels, msg.since)
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
