"""Who is watching, across every server: viewers per room, the venue's screens, and which
screens showed an announcement.

Each server reports every few seconds, in Redis, how many connections it holds per channel
and kind (the counts expire with the server; channels are labelled as in the metrics, so the
fields are bounded whatever names clients ask for), and the records of the screens connected to
it. A screen is a screen token (`feed token create --role screen --name door-atlas-1`) that a
kiosk's page presents on the websocket (`identify`): its record is kept by name with when it was
last seen, so the console can say which screen is dark and where to walk. Only such screens are
listed and acknowledge an announcement once it is on display (`{"type": "ack", "id": ...}`); the
console asks who did and who did not. Anonymous clients are viewers, whatever they say.

    GET /api/presence                      viewers per room and kind
    GET /api/screens                       every known screen: online or not, last seen
    GET /api/announcements/{id}/receipts   the screens showing it, and the ones that are not
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

from feed import keys, loops, protocol
from feed.bus import Bus
from feed.errors import FeedError, InvalidMessage, LimitExceeded, Unauthorized
from feed.relay import OTHER
from publisher import tokens
from web import api
from web.client import Client

log = logging.getLogger(__name__)

REPORT_EVERY = 5.0  # seconds between a server's reports
STALE_AFTER = 3 * REPORT_EVERY  # a count or a screen not reported for this long is gone
RECEIPTS_TTL = 7 * 24 * 3600  # seconds receipts are kept
RECEIPT_WRITES = 8  # receipts written to Redis at once, per server
MAX_ACKS_PER_CONNECTION = 256
FORGET_AFTER = 7 * 24 * 3600  # seconds after which a screen not seen is forgotten
PRUNE_EVERY = 60  # reports (5 min)

PRESENCE: web.AppKey[Presence] = web.AppKey("presence")


def now_ms() -> int:
    """Real time, also in the demo: staff walk to a dark screen in this world's minutes."""
    return int(time.time() * 1000)


Labels = Callable[[Iterable[tuple[str, int]]], dict[str, int]]


class Presence:
    def __init__(self, bus: Bus, clients: set[Client], labelled: Labels) -> None:
        self.bus = bus
        self.clients = clients
        self.labelled = labelled  # feed.relay.Relay.labelled: counts per bounded label
        self.server = f"{socket.gethostname()}-{secrets.token_hex(3)}"
        self._gone: dict[str, dict[str, Any]] = {}  # named screens that left since the report
        self._tasks: set[asyncio.Task[None]] = set()
        self._writes = asyncio.Semaphore(RECEIPT_WRITES)
        self._reports = 0

    def record(self, client: Client, *, online: bool) -> dict[str, Any]:
        return {
            "name": client.screen,
            "token": client.token_id,
            "rooms": list(client.rooms),
            "channels": sorted(client.channels),
            "online": online,
            "last_seen": now_ms(),
            "server": self.server,
        }

    def left(self, client: Client) -> None:
        """A client disconnected: a named screen shows as offline from the next report on."""
        if client.screen is not None:
            self._gone[client.screen] = self.record(client, online=False)

    def ack(self, client: Client, announcement_id: str) -> None:
        """A screen says it shows an announcement. Only named screens can say so (the console
        lists them by name), only once per announcement and connection, and only for an
        announcement on a channel it follows: nothing else reaches Redis."""
        if client.screen is None:
            raise InvalidMessage(
                "only a screen acknowledges: identify with its screen token first"
                " (feed token create --role screen)"
            )
        if announcement_id in client.acked:
            return
        if len(client.acked) >= MAX_ACKS_PER_CONNECTION:
            raise LimitExceeded(f"at most {MAX_ACKS_PER_CONNECTION} acks per connection")
        client.acked.add(announcement_id)
        task = asyncio.create_task(self._ack(client.screen, announcement_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ack(self, screen: str, announcement_id: str) -> None:
        async with self._writes:  # a few at once: the API shares these Redis connections
            try:
                await self.bus.receipt(announcement_id, screen, now_ms(), RECEIPTS_TTL)
            except FeedError as exc:
                log.info("could not record that %s shows %s: %s", screen, announcement_id, exc)

    def counts(self) -> dict[str, int]:
        """Connections by "<label>|<kind>", labels bounded as the metrics' are."""
        held = Counter((ch, c.kind) for c in self.clients for ch in c.channels)
        counts: dict[str, int] = {}
        for kind in {kind for _, kind in held}:
            mine = ((ch, n) for (ch, k), n in held.items() if k == kind)
            for label, n in self.labelled(mine).items():
                counts[f"{label}|{kind}"] = n
        return counts

    async def _revoked(self) -> None:
        """Screens whose token was revoked stop being screens at once (within a report)."""
        named = [c for c in self.clients if c.token_id is not None]
        if not named:
            return
        valid = {t.id for t in await tokens.list_all(self.bus) if t.role == tokens.Role.SCREEN}
        for client in named:
            if client.token_id not in valid:
                if client.screen is not None:
                    self._gone[client.screen] = self.record(client, online=False)
                client.screen, client.token_id, client.rooms = None, None, ()
                gone = Unauthorized(
                    "this screen's token was revoked: it is a viewer now; register it again"
                    " with a new screen token (feed token create --role screen --name NAME)"
                )
                client.send(protocol.error(gone.code, gone.message))

    async def report(self) -> None:
        await self._revoked()
        counts = self.counts()
        here = {c.screen: c for c in self.clients if c.screen is not None}
        screens = {
            name: orjson.dumps(record)
            for name, record in self._gone.items()
            if name not in here  # the same screen came back on another connection
        }
        screens.update(
            {name: orjson.dumps(self.record(c, online=True)) for name, c in here.items()}
        )
        self._gone.clear()
        await self.bus.report_presence(self.server, counts, screens, ttl=int(STALE_AFTER))
        self._reports += 1
        if self._reports % PRUNE_EVERY == 1:  # now and then, forget screens gone for long
            forgotten = [
                r["name"]
                for r in await self.bus.screens()
                if not isinstance(r.get("last_seen"), int)
                or now_ms() - r["last_seen"] > FORGET_AFTER * 1000
            ]
            if forgotten:
                await self.bus.forget_screens(forgotten)

    async def stop(self) -> None:
        """On shutdown: this server's counts go at once, its screens are marked offline."""
        try:
            await self.report()
        except FeedError as exc:
            log.info("last presence report failed: %s", exc)

    async def run(self) -> None:
        await loops.every(REPORT_EVERY, self.report, what="presence report", log=log)

    def online(self, record: dict[str, Any], now: int) -> bool:
        last_seen = record.get("last_seen")
        fresh = isinstance(last_seen, int) and now - last_seen <= STALE_AFTER * 1000
        return bool(record.get("online")) and fresh


async def _staff(request: web.Request) -> None:
    """Who is watching is for the staff: a screen token (it sits in a kiosk's address) gets 403."""
    (await api.caller(request)).check_staff()


async def get_presence(request: web.Request) -> web.Response:
    await _staff(request)
    counts = await request.app[PRESENCE].bus.presence()
    rooms: dict[str, dict[str, int]] = {}
    other: dict[str, int] = {}
    for key, count in counts.items():
        channel, _, kind = key.rpartition("|")
        if channel == OTHER:  # channels neither in the program nor in Redis
            other[kind] = other.get(kind, 0) + count
            continue
        place = keys.room_of(channel) or channel  # a room's id, or "venue"
        rooms.setdefault(place, {}).setdefault(kind, 0)
        rooms[place][kind] += count
    return api.answer({"rooms": rooms, "other": other, "stale_after_s": STALE_AFTER})


async def registered(presence: Presence) -> list[dict[str, Any]]:
    """Every screen token's screen, as last reported (never seen: offline, last seen null).
    Records of anything else (revoked tokens, names claimed before screen tokens) are left out."""
    now = now_ms()
    records = {r["name"]: r for r in await presence.bus.screens()}
    screens = []
    for token in await tokens.list_all(presence.bus):
        if token.role != tokens.Role.SCREEN:
            continue
        record = records.get(token.name)
        if record is None or record.get("token") != token.id:
            record = {"name": token.name, "channels": [], "last_seen": None, "server": None}
        screens.append(
            {**record, "token": token.id, "rooms": list(token.rooms),
             "online": presence.online(record, now)}
        )  # fmt: skip
    return sorted(screens, key=lambda r: str(r["name"]))


async def get_screens(request: web.Request) -> web.Response:
    await _staff(request)
    return api.answer({"screens": await registered(request.app[PRESENCE])})


async def get_receipts(request: web.Request) -> web.Response:
    await _staff(request)
    announcement_id = request.match_info["id"]
    presence = request.app[PRESENCE]
    bus = presence.bus
    screens = await registered(presence)
    names = {s["name"] for s in screens}
    shown = {
        name: at for name, at in (await bus.receipts(announcement_id)).items() if name in names
    }
    record = await bus.announcement(announcement_id)
    channels = set(record["channels"]) if record else set()
    # The screens that should show it: those online now that follow one of its channels (all
    # of them when the announcement is no longer on record).
    expected = sorted(
        s["name"]
        for s in screens
        if s["online"] and (not channels or channels & set(s.get("channels", [])))
    )
    return api.answer(
        {
            "id": announcement_id,
            "channels": sorted(channels),
            "screens": len(set(expected) | set(shown)),
            "shown": [{"screen": name, "at": at} for name, at in sorted(shown.items())],
            "missing": [name for name in expected if name not in shown],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/presence", get_presence, expect_handler=api.expect)
    app.router.add_get("/api/screens", get_screens, expect_handler=api.expect)
    app.router.add_get("/api/announcements/{id}/receipts", get_receipts, expect_handler=api.expect)
