"""The websocket endpoint: one `WebSocketClient` per connection, between aiohttp and the relay.

It upgrades the request, says hello, and reads the client's messages (subscribe, unsubscribe,
ping, identify, ack) until the connection ends. What is sent goes through the client's pending
output and the outbox (web/client.py, web/outbox.py): nothing here waits on a client to write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
        kind, screen = identity(request)  # a bad ?screen= is refused before anything else
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
        client = WebSocketClient(
            ws,
            request.transport,
            parts.outbox,
            parts.settings.client_queue_bytes,
            kind=kind,
            screen=screen,
        )
        clients.add(client)
        venue = venue_time(parts)
        client.send(protocol.hello(clock.ms(), relay.live, clock.rate, venue))
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


def identity(request: web.Request) -> tuple[str, str | None]:
    """What a client says it is: `?kind=screen|phone|console`, for the counts only. `?screen=`
    (from before screen tokens) still says `kind=screen`, and is still checked, but names
    nothing: a screen's name is a claim only its screen token makes (`identify`)."""
    # Read once and let go: aiohttp's `request.query` would keep its parsed copy as long as the
    # request lives, which for a websocket is the whole connection.
    query = dict(parse_qsl(request.query_string)) if request.query_string else {}
    screen = query.get("screen") or None
    if screen is not None:
        keys.screen_name(screen)
    kind = "screen" if screen else query.get("kind", "other")
    return (kind if kind in KINDS else "other"), None


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
