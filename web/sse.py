"""`GET /sse`: the live feed as Server-Sent Events, for networks and devices where websockets
fail (proxies that strip upgrades, old embedded browsers).

The same messages as on the websocket, in the same order, through the same hub and write path:
`hello`, then for each channel a snapshot (or the missed events) and `subscribed`, then events.
The stream is one-way, so the channels and the position to resume from come with the request:

    GET /sse?channels=venue,room:atlas[&since=<id>][&kind=screen]

Every snapshot and event carries an SSE `id` that says where the stream stands on each of its
channels: `<epoch>:<seq>` for a stream of one channel, `<channel>=<epoch>:<seq>,...` for several.
A browser's EventSource sends the last one back as `Last-Event-ID` when it reconnects (a page
may also pass it as `since`), and the stream resumes from there with no gap. A `pong` every few
seconds keeps proxies from closing a quiet stream and lets clients notice a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiohttp import web

from feed import keys, protocol
from feed.errors import CloseCode, InvalidMessage
from feed.protocol import Position
from web.client import Client
from web.ws import PARTS, identity, subscribe, venue_time

KEEPALIVE = 5.0  # seconds between pongs on a stream
RETRY_MS = 2000  # how soon a browser's EventSource reconnects on its own
# Messages that say where a channel stands: a resume with nothing missed has only `subscribed`.
_POSITIONED = (b'{"type":"event",', b'{"type":"snapshot",', b'{"type":"subscribed",')


class SseClient(Client):
    """A Server-Sent Events stream: the hub's Sink, written like a websocket client's, with
    each message as an SSE event (and its id) inside HTTP/1.1 chunks."""

    def __init__(self, channels: list[str], *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.order = channels
        self.positions: dict[str, tuple[str, int]] = {}
        self._started = False
        self.chunked = True

    def _encode(self, frame: bytes) -> bytes:
        event_id = self._advance(frame) if frame.startswith(_POSITIONED) else None
        head = b"id: " + event_id.encode() + b"\n" if event_id else b""
        return head + b"data: " + frame + b"\n\n"  # compact JSON: no newline inside

    def _advance(self, frame: bytes) -> str:
        msg = orjson.loads(frame)
        self.positions[msg["channel"]] = (msg["epoch"], msg["seq"])
        return stream_id(self.order, self.positions)

    def _wrap(self, data: bytes) -> bytes:
        if not self._started:  # first, how soon the browser should come back if cut off
            self._started = True
            data = b"retry: %d\n\n" % RETRY_MS + data
        if not self.chunked:  # HTTP/1.0: the body simply runs until the connection closes
            return data
        return b"%x\r\n" % len(data) + data + b"\r\n"

    async def _close(self) -> None:
        # The handler ends the response (aiohttp writes the last chunk); a slow reader is cut.
        if self.close_code == CloseCode.SLOW:
            self.abort()


def stream_id(order: list[str], positions: dict[str, tuple[str, int]]) -> str:
    if len(order) == 1:
        epoch, seq = positions[order[0]]
        return f"{epoch}:{seq}"
    return ",".join(
        f"{ch}={positions[ch][0]}:{positions[ch][1]}" for ch in order if ch in positions
    )


def parse_stream_id(value: str | None, channels: list[str]) -> dict[str, Position]:
    """Where to resume each channel from, read from an id this server gave; what cannot be
    read is left out (that channel starts with a snapshot)."""
    since: dict[str, Position] = {}
    if not value:
        return since
    parts = [(channels[0], value)] if len(channels) == 1 and "=" not in value else []
    for part in value.split(",") if not parts else ():
        channel, _, where = part.strip().rpartition("=")
        parts.append((channel, where))
    for channel, where in parts:
        epoch, _, seq = where.rpartition(":")
        if channel in channels and seq.isdigit():
            with contextlib.suppress(InvalidMessage):
                since[channel] = protocol.position({"epoch": epoch, "seq": int(seq)}, "since")
    return since


def parse_channels(value: str | None) -> list[str]:
    names = [c.strip() for c in (value or "").split(",") if c.strip()]
    if not names:
        raise InvalidMessage("give the channels to follow: /sse?channels=venue,room:atlas")
    if len(names) > protocol.MAX_CHANNELS_PER_CONNECTION:
        raise InvalidMessage(f"at most {protocol.MAX_CHANNELS_PER_CONNECTION} channels")
    return list(dict.fromkeys(keys.channel(c) for c in names))


async def handle(request: web.Request) -> web.StreamResponse:
    parts = request.app[PARTS]
    relay, clients, presence, clock = parts.relay, parts.clients, parts.presence, parts.clock
    channels = parse_channels(request.query.get("channels"))
    since = parse_stream_id(
        request.headers.get("Last-Event-ID") or request.query.get("since"), channels
    )
    kind = identity(request)
    address = parts.gate.admit(request)
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            }
        )
        chunked = request.version >= (1, 1)  # HTTP/1.0 knows no chunks
        if chunked:
            response.enable_chunked_encoding()
        response.force_close()
        await response.prepare(request)
        client = SseClient(
            channels, request.transport, parts.outbox, parts.settings.client_queue_bytes,
            kind=kind,
        )  # fmt: skip
        client.chunked = chunked
        clients.add(client)
        try:
            venue = venue_time(parts)
            client.send(protocol.hello(clock.ms(), relay.live, clock.rate, venue))
            subscribe(client, parts, channels, since)
            transport = request.transport
            while client.close_code is None:
                await asyncio.wait({client.closed}, timeout=KEEPALIVE)
                if transport is None or transport.is_closing():
                    break
                client.send(protocol.pong(clock.ms()))
        finally:
            clients.discard(client)
            presence.left(client)
            parts.admission.cancel(client)
            relay.unsubscribe(client, client.channels)
            client.close(CloseCode.NORMAL, "")
        return response
    finally:
        parts.gate.leave(address)
