"""The relay: joins the Redis bus to the hub in one web process.

It owns the two loops of a process: `listen` (the one pub/sub subscription, feeding events into
the hub) and the syncer (reads from Redis that bring channels up to date: the first load of a
channel, and a catch-up of every channel each time the subscription becomes live). Client
resumes that the hub cannot serve from memory become history reads here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import secrets
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from feed import keys, loops, protocol
from feed.bus import Bus
from feed.errors import InvalidMessage, Unavailable
from feed.hub import Attached, Hub, NeedHistory, Sink
from feed.models import Kind
from feed.protocol import Position

log = logging.getLogger(__name__)

WRITES_EVERY = 5.0  # seconds between checks that Redis takes writes
OTHER = "other"  # the label of channels neither in the program nor in Redis (metrics, presence)
MAX_LABELS = 1000  # channels named in metrics and presence at most; the rest count as OTHER
SYNC_BATCH = 64  # channels read from Redis concurrently in one round of the syncer
HISTORY_READS = 16  # history reads for resuming clients in flight at once, per process


class Relay:
    def __init__(self, bus: Bus, hub: Hub, on_health: Callable[[bool], None] = lambda _: None):
        self.bus = bus
        self.hub = hub
        self.subscribed = False  # Redis has confirmed the subscription
        self.live = False  # subscribed, and caught up with what was missed before: ready
        self.bad_envelopes = 0
        self.subscriptions = 0  # times Redis confirmed the subscription (1 + reconnects)
        self.losses = 0  # times the subscription was lost
        self._generation = 0  # bumped each time the subscription is confirmed
        self._on_health = on_health
        self._stale: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # One history read per client and channel: a newer request replaces an older one.
        self._reads: dict[tuple[Sink, str], asyncio.Task[None]] = {}
        self._read_slots = asyncio.Semaphore(HISTORY_READS)
        # The imported program's room ids, as last read: None while no program is imported (any
        # room may be followed) or before the first read (nothing is refused on a guess).
        self.rooms: frozenset[str] | None = None
        # Whether Redis takes writes (None: not known yet), and its words when it does not: a
        # full Redis (maxmemory) or a read-only replica still serves every screen, but refuses
        # every change, and says so on /readyz, /metrics and the console.
        self.writable: bool | None = None
        self.writes_refused = ""
        self._server = secrets.token_hex(6)
        self.program_zone: str | None = None  # the zone the program's times were read in
        self._rooms_asked = 0

    async def run(self) -> None:
        """Follow the bus and keep channels synced until cancelled."""
        syncer = asyncio.create_task(self._supervise(self._syncer), name="feed-syncer")
        self._spawn(self._check_eviction_policy())
        self._spawn(self._watch_writes())
        try:
            await self._supervise(
                lambda: self.bus.listen(self._on_live, self._on_down, self._on_message)
            )
        finally:
            tasks = [syncer, *self._tasks, *self._reads.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a loop that should never end; if a bug ends it, say so, go unready, restart it."""
        name = getattr(loop, "__name__", "the relay")
        await loops.forever(
            loop, what=name, log=log, on_crash=lambda: self._on_down("internal error")
        )

    async def _check_eviction_policy(self) -> None:
        policy = await self.bus.eviction_policy()
        if policy not in (None, "noeviction"):
            log.warning(
                "Redis maxmemory-policy is %s: under memory pressure it may evict feed keys and"
                " lose changes; configure noeviction",
                policy,
            )

    async def _watch_writes(self) -> None:
        while True:
            try:
                refused = await self.bus.refuses_writes(
                    keys.writable_key(self._server), int(3 * WRITES_EVERY * 1000)
                )
            except Unavailable:
                pass  # unreachable: /readyz says so already; the last answer stands
            else:
                if refused and self.writable is not False:
                    log.warning("Redis refuses writes: %s", refused)
                elif not refused and self.writable is False:
                    log.info("Redis takes writes again")
                self.writable, self.writes_refused = not refused, refused or ""
            await asyncio.sleep(WRITES_EVERY)

    # ---- what clients ask ---------------------------------------------------------------------

    def label(self, channel: str) -> str:
        """What metrics and presence call a channel: `venue`, a room of the program, or (with no
        program) a room Redis holds; anything else is OTHER, so that nobody creates a series
        or a presence field per name by merely asking for it."""
        if channel == keys.VENUE:
            return channel
        if self.rooms is not None:
            return channel if channel.removeprefix(keys.ROOM_PREFIX) in self.rooms else OTHER
        ch = self.hub.channels.get(channel)
        return channel if ch is not None and ch.exists else OTHER

    def labelled(self, counts: Iterable[tuple[str, int]]) -> dict[str, int]:
        """Counts per channel summed per label, at most MAX_LABELS of them besides OTHER (the
        smallest fold into it)."""
        total: Counter[str] = Counter()
        for channel, count in counts:
            total[self.label(channel)] += count
        if len(total) > MAX_LABELS + 1:
            other = total.pop(OTHER, 0)
            kept = dict(total.most_common(MAX_LABELS))
            kept[OTHER] = other + sum(total.values()) - sum(kept.values())
            return kept
        return dict(total)

    def allowed(self, channel: str) -> bool:
        """Whether clients may follow `channel`: `venue`, and the program's rooms once there is
        a program (before, any room: a setup without a program names its rooms as it goes)."""
        if channel == keys.VENUE or self.rooms is None:
            return True
        return channel.removeprefix(keys.ROOM_PREFIX) in self.rooms

    def shows(self, channels: Iterable[str], announcement_id: str) -> bool:
        """Whether an announcement is in the state of one of these channels, as the hub has it."""
        for name in channels:
            ch = self.hub.channels.get(name)
            notes = (ch.state or {}).get("announcements") if ch is not None else None
            if any(isinstance(a, dict) and a.get("id") == announcement_id for a in notes or ()):
                return True
        return False

    async def _load_rooms(self) -> None:
        """Read the program's rooms, retrying until Redis answers; of several reads in flight
        (an import publishes many events), only the last one asked for counts."""
        self._rooms_asked += 1
        asked, delay = self._rooms_asked, 0.5
        while True:
            try:
                rooms = await self.bus.program_rooms()
                zone = await self.bus.program_zone()
            except Unavailable as exc:
                log.info("could not read the program's rooms (retrying): %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if asked == self._rooms_asked:
                self.rooms = frozenset(rooms) if rooms is not None else None
                self.program_zone = zone
            return

    def subscribe(self, sink: Sink, channels: Iterable[str], since: Mapping[str, Position]) -> None:
        for name in channels:
            outcome = self.hub.subscribe(sink, name, since.get(name))
            if outcome is Attached.AWAITS_SYNC:
                self._want(name)
            elif isinstance(outcome, NeedHistory):
                self._read_history(sink, outcome)

    def unsubscribe(self, sink: Sink, channels: Iterable[str]) -> None:
        for name in channels:
            self.hub.unsubscribe(sink, name)
            if (read := self._reads.pop((sink, name), None)) is not None:
                read.cancel()

    def _read_history(self, sink: Sink, need: NeedHistory) -> None:
        key = (sink, need.channel)
        if (older := self._reads.pop(key, None)) is not None:
            older.cancel()
        task = asyncio.create_task(self._history(sink, need))
        self._reads[key] = task
        task.add_done_callback(functools.partial(self._read_done, key))

    def _read_done(self, key: tuple[Sink, str], task: asyncio.Task[None]) -> None:
        if self._reads.get(key) is task:
            del self._reads[key]

    async def _history(self, sink: Sink, need: NeedHistory) -> None:
        async with self._read_slots:
            try:
                synced = await self.bus.sync(need.channel, after=need.after)
                events = synced.events if synced.epoch == need.after.epoch else None
            except Unavailable as exc:
                log.info("history of %s unavailable, sending a snapshot: %s", need.channel, exc)
                events = None
        self.hub.history(sink, need, events)

    # ---- what Redis says ----------------------------------------------------------------------

    def _on_live(self) -> None:
        log.info(
            "subscribed to Redis; catching up %d channel(s) from history", len(self.hub.channels)
        )
        self._generation += 1
        self.subscriptions += 1
        self.subscribed = True
        self.bus.forget_seed()  # Redis may have come back without its data, and the seed
        self.hub.suspend()
        self._want(*self.hub.channels)
        self._spawn(self._load_rooms())  # an import may have happened while we were away

    def _on_down(self, reason: str) -> None:
        log.warning("lost the Redis subscription (%s); serving the last known state", reason)
        self.losses += 1
        self.subscribed = False
        self.hub.suspend()
        self._set_live(False)

    def _set_live(self, live: bool) -> None:
        if live != self.live:
            self.live = live
            self._on_health(live)

    def _on_message(self, raw: bytes) -> None:
        try:
            event = protocol.parse_event(raw)
        except InvalidMessage as exc:
            self.bad_envelopes += 1
            log.warning("dropping a malformed envelope from Redis: %s", exc)
            return
        if event.kind in (Kind.SCHEDULE, Kind.PROGRAM):
            self._spawn(self._load_rooms())  # a program was imported: its rooms may differ
        if self.hub.event(event):
            self._want(event.channel)

    # ---- syncing ------------------------------------------------------------------------------

    def _want(self, *names: str) -> None:
        self._stale.update(names)
        self._wake.set()

    async def _syncer(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.subscribed and self._stale:
                batch = [self._stale.pop() for _ in range(min(SYNC_BATCH, len(self._stale)))]
                positions = self.hub.positions()
                results = await asyncio.gather(
                    *(self._sync_one(name, positions.get(name)) for name in batch),
                    return_exceptions=True,
                )
                failed = [n for n, r in zip(batch, results, strict=True) if r is not None]
                if failed:
                    self._stale.update(failed)
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, 5.0)
                else:
                    backoff = 0.1
            if self.subscribed and not self._stale:
                self._set_live(True)  # caught up with everything missed: ready

    async def _sync_one(self, name: str, known: Position | None) -> None:
        if name not in self.hub.channels:
            return  # evicted while it waited: nobody here follows it any more
        generation = self._generation
        self.hub.sync_begins(name)
        try:
            synced = await self.bus.sync(name, known=known, after=known)
        except Unavailable as exc:
            log.info("sync of %s failed, will retry: %s", name, exc)
            raise
        if not self.subscribed or generation != self._generation:
            # The subscription dropped while we read: events published after this read may have
            # been missed, so it proves nothing. The next confirmation syncs everything again.
            self._stale.add(name)
            return
        dropped = self.hub.counts.impossible
        gap, needs = self.hub.synced(
            name, synced.epoch, synced.seq, synced.state, synced.events, exists=synced.exists
        )
        if self.hub.counts.impossible > dropped:
            log.warning(
                "dropped %d event(s) of %s from the bus that Redis never stored (seq beyond %d)",
                self.hub.counts.impossible - dropped, name, synced.seq,
            )  # fmt: skip
        if gap:
            self._want(name)
        for sink, need in needs:
            self._read_history(sink, need)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
