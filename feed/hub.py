"""The hub: per-process fan-out of channel events to connected clients, without I/O.

The hub keeps, for every channel someone here cares about, the latest state it knows with its
`(epoch, seq)`, the last few encoded events, and the clients subscribed to it. Everything here is
synchronous and runs on the event loop thread, so "send the snapshot" and "add to the subscribers"
happen in one step and no event can fall between them. The Redis side (feed.relay) feeds it events
and the results of reads; clients receive bytes through `Sink.send`, which must never block.

A channel is *live* while the hub is sure it has seen every event up to `seq`. It is not live
before its first load, and after the Redis subscription dropped or an event came out of order;
then incoming events are buffered until a sync read from Redis says where the channel stands.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from feed import protocol, reducer
from feed.models import State
from feed.protocol import Event, Position

# Events kept per channel to resume gaps without asking Redis, at most so many bytes of them: a
# wifi blip of ten seconds at 20 events a second is 200 events, and each phone past what memory
# holds costs a history read from Redis (at 20,000 phones, the tail of the blip's resumes).
RECENT_EVENTS = 1024
RECENT_BYTES = 512 * 1024
MAX_BUFFERED = 10_000  # events held while a channel syncs; past that a snapshot is cheaper
MAX_IDLE_CHANNELS = 1024  # channels kept with no subscribers, for quick returns
# A snapshot's bytes serve every subscriber of the same (epoch, seq) for up to this long, never
# past the expiry of an announcement it holds: a thousand clients asking at once cost one
# encoding, not a thousand (issue 18 §3). After that, the time-dependent view (now and next,
# what the room shows, expiries) is computed again, and the bytes are reused if it is the same.
SNAPSHOT_REUSE_MS = 1000


class Sink(Protocol):
    """A client connection as the hub sees it. `send` queues bytes and returns at once."""

    def send(self, frame: bytes) -> None: ...


class Attached(Enum):
    """What `Hub.subscribe` did with a client, when it needs no history read."""

    JOINED = "joined"  # it has its snapshot or the events it missed, and follows live
    AWAITS_SYNC = "awaits sync"  # the channel must first be synced from Redis (Relay does it)


@dataclass(frozen=True, slots=True)
class NeedHistory:
    """The hub cannot resume this client from memory: read events `after`..`upto` from Redis."""

    channel: str
    after: Position
    upto: int


@dataclass(slots=True)
class _Waiting:
    """A client attached to a channel that is not live for it yet."""

    since: Position | None
    reading: NeedHistory | None = None  # the history read this client waits for, if any
    pending: list[bytes] = field(default_factory=list)  # events after `upto`, held meanwhile


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A channel's snapshot as last encoded, and the instants between which it holds as is."""

    epoch: str
    seq: int
    built: int  # Unix ms
    until: int  # Unix ms
    view: State
    frame: bytes


@dataclass(slots=True)
class Channel:
    name: str
    epoch: str | None = None
    seq: int = 0
    state: State | None = None
    live: bool = False
    subscribers: dict[Sink, None] = field(default_factory=dict)  # an ordered set
    waiting: dict[Sink, _Waiting] = field(default_factory=dict)
    recent: deque[tuple[int, bytes]] = field(default_factory=deque)  # see `remember`
    recent_bytes: int = 0
    buffered: list[Event] = field(default_factory=list)
    overflowed: bool = False  # events were dropped from `buffered`: a sync must read them again
    # How many of `buffered` had arrived when the sync read now in flight began: any of them
    # beyond the position that read returns cannot have been published (see `synced`).
    read_mark: int = 0
    # Whether Redis holds the channel (something was published on it). One that it does not
    # hold is served its initial state, and named by no metric label of its own.
    exists: bool = False
    snapshot: _Snapshot | None = None

    def remember(self, seq: int, frame: bytes) -> None:
        """Keep an event's frame for resumes: the last RECENT_EVENTS, at most RECENT_BYTES of
        them (always the newest, however large)."""
        recent = self.recent
        recent.append((seq, frame))
        self.recent_bytes += len(frame)
        while len(recent) > 1 and (len(recent) > RECENT_EVENTS or self.recent_bytes > RECENT_BYTES):
            self.recent_bytes -= len(recent.popleft()[1])

    @property
    def position(self) -> Position | None:
        return Position(self.epoch, self.seq) if self.epoch is not None else None

    def idle(self) -> bool:
        return not self.subscribers and not self.waiting


@dataclass(slots=True)
class Counts:
    """What the hub has done since it started, for the metrics."""

    events: int = 0  # events applied and fanned out
    deliveries: int = 0  # frames handed to subscribers for those events
    snapshots: int = 0  # subscriptions that started from a snapshot, with no position given
    resumed: int = 0  # resumes served with exactly the missed events: no gap
    resumed_with_snapshot: int = 0  # resumes that needed a snapshot (too old, another epoch)
    impossible: int = 0  # bus events beyond what Redis holds, seen before it was read: dropped
    snapshot_encodings: int = 0  # snapshots encoded; the others reused the same bytes
    snapshot_reuses: int = 0


class Hub:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.channels: dict[str, Channel] = {}
        self.counts = Counts()
        self._idle: OrderedDict[str, None] = OrderedDict()  # channels nobody follows, oldest first
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ---- clients -----------------------------------------------------------------------------

    def subscribe(self, sink: Sink, name: str, since: Position | None) -> Attached | NeedHistory:
        """Attach `sink` to a channel: JOINED when done, AWAITS_SYNC when the channel must first
        be synced from Redis, or a NeedHistory for events only Redis still has."""
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = Channel(name)
        self._idle.pop(name, None)
        ch.subscribers.pop(sink, None)
        ch.waiting.pop(sink, None)
        return self._attach(ch, sink, since)

    def _attach(self, ch: Channel, sink: Sink, since: Position | None) -> Attached | NeedHistory:
        if ch.epoch is None or (
            not ch.live and since is not None and (since.epoch != ch.epoch or since.seq > ch.seq)
        ):
            # Not loaded yet; or this process is cut off from Redis and the client may know more
            # than it does (it came from another process): rather than move the client back in
            # time, wait for the next sync.
            ch.waiting[sink] = _Waiting(since)
            return Attached.AWAITS_SYNC
        if since is None or since.epoch != ch.epoch or since.seq > ch.seq:
            self._join_with_snapshot(ch, sink, resuming=since is not None)
            return Attached.JOINED
        missed = ch.seq - since.seq
        if missed == 0 or (len(ch.recent) >= missed and ch.recent[-missed][0] == since.seq + 1):
            for _, frame in itertools.islice(ch.recent, len(ch.recent) - missed, None):
                sink.send(frame)
            self._join(ch, sink, resumed=True)
            return Attached.JOINED
        need = NeedHistory(ch.name, since, ch.seq)
        ch.waiting[sink] = _Waiting(since, reading=need)
        return need

    def history(self, sink: Sink, need: NeedHistory, events: Iterable[Event] | None) -> None:
        """Finish a NeedHistory with the events Redis returned (None: it could not say)."""
        ch = self.channels.get(need.channel)
        waiting = ch.waiting.get(sink) if ch else None
        if ch is None or waiting is None or waiting.reading is not need:
            # Unsubscribed meanwhile, given a snapshot by a channel reset, or subscribed again
            # (a newer read answers that request).
            return
        del ch.waiting[sink]
        wanted = need.after.seq + 1
        frames = []
        for ev in events or ():
            if ev.epoch != need.after.epoch or ev.seq > need.upto:
                break
            if ev.seq == wanted:
                frames.append(ev.frame())
                wanted += 1
        if wanted != need.upto + 1 or ch.epoch != need.after.epoch:
            self._join_with_snapshot(ch, sink, resuming=True)
            return
        for frame in frames:
            sink.send(frame)
        for frame in waiting.pending:
            sink.send(frame)
        self._join(ch, sink, resumed=True)

    def unsubscribe(self, sink: Sink, name: str) -> None:
        ch = self.channels.get(name)
        if ch is None:
            return
        ch.subscribers.pop(sink, None)
        ch.waiting.pop(sink, None)
        if ch.idle():
            self._idle[name] = None
            while len(self._idle) > MAX_IDLE_CHANNELS:
                oldest, _ = self._idle.popitem(last=False)
                del self.channels[oldest]

    def _join_with_snapshot(self, ch: Channel, sink: Sink, *, resuming: bool) -> None:
        if resuming:
            self.counts.resumed_with_snapshot += 1
        else:
            self.counts.snapshots += 1
        sink.send(self._snapshot(ch))
        self._join(ch, sink, resumed=False)

    def _join(self, ch: Channel, sink: Sink, *, resumed: bool) -> None:
        assert ch.epoch is not None
        if resumed:
            self.counts.resumed += 1
        ch.subscribers[sink] = None
        sink.send(protocol.subscribed(ch.name, ch.epoch, ch.seq, resumed))

    def _snapshot(self, ch: Channel) -> bytes:
        """The channel's snapshot now: the bytes encoded before for this (epoch, seq) while
        they still hold, else encoded once more."""
        assert ch.epoch is not None and ch.state is not None
        now = self._now_ms()
        last = ch.snapshot
        same = last is not None and last.epoch == ch.epoch and last.seq == ch.seq
        if same and last is not None and last.built <= now < last.until:
            self.counts.snapshot_reuses += 1
            return last.frame
        view = reducer.current(ch.state, now)
        if same and last is not None and view == last.view:
            frame = last.frame
            self.counts.snapshot_reuses += 1
        else:
            frame = protocol.snapshot(ch.name, ch.epoch, ch.seq, view)
            self.counts.snapshot_encodings += 1
        ch.snapshot = _Snapshot(ch.epoch, ch.seq, now, _holds_until(ch.state, now), view, frame)
        return frame

    # ---- Redis side --------------------------------------------------------------------------

    def event(self, ev: Event) -> bool:
        """Take one event from the bus. Returns True when the channel needs a sync from Redis."""
        ch = self.channels.get(ev.channel)
        if ch is None:
            return False  # nobody here follows that channel
        if not ch.live:
            if len(ch.buffered) < MAX_BUFFERED:
                ch.buffered.append(ev)
            else:
                ch.overflowed = True
            return False
        if ev.epoch == ch.epoch and ev.seq <= ch.seq:
            return False  # a duplicate: already applied
        if ev.epoch != ch.epoch or ev.seq != ch.seq + 1:
            ch.live = False  # out of order or a new epoch: something was missed
            ch.buffered.append(ev)
            return True
        self._apply(ch, ev)
        return False

    def _apply(self, ch: Channel, ev: Event) -> None:
        assert ch.state is not None
        ch.state = reducer.apply(ch.state, ev.kind, ev.data, ev.ts)
        ch.seq = ev.seq
        ch.exists = True
        frame = ev.frame()  # encoded once, the same bytes for every receiver
        ch.remember(ev.seq, frame)
        for sink in ch.subscribers:
            sink.send(frame)
        self.counts.events += 1
        self.counts.deliveries += len(ch.subscribers)
        for waiting in ch.waiting.values():
            if waiting.reading is not None:
                waiting.pending.append(frame)

    def suspend(self) -> None:
        """The Redis subscription dropped: buffer everything until each channel is synced again."""
        for ch in self.channels.values():
            ch.live = False

    def sync_begins(self, name: str) -> None:
        """A sync read of the channel from Redis begins now (feed.relay calls this just before
        it): events buffered before this point and beyond what Redis holds were never stored."""
        ch = self.channels.get(name)
        if ch is not None:
            ch.read_mark = len(ch.buffered)

    def synced(
        self,
        name: str,
        epoch: str,
        seq: int,
        state: State,
        events: list[Event],
        *,
        exists: bool = True,
    ) -> tuple[bool, list[tuple[Sink, NeedHistory]]]:
        """Bring a channel up to what Redis said: its (epoch, seq, state) and the events after the
        position the hub asked from; then apply what was buffered meanwhile, go live, and attach
        the clients that were waiting.

        Returns whether the channel needs another sync (the buffer showed a gap, or held events
        it could not place), and the waiting clients that now need history from Redis."""
        ch = self.channels.get(name)
        if ch is None:
            return False, []
        ch.exists = ch.exists or exists
        # An event of this epoch that arrived before the read began, yet is beyond what Redis
        # holds, was never published there (a stray or forged message on the bus): Redis would
        # have it. Kept, it would ask for a sync after every sync, forever.
        early = ch.buffered[: ch.read_mark]
        impossible = [ev for ev in early if ev.epoch == epoch and ev.seq > seq]
        if impossible:
            self.counts.impossible += len(impossible)
            ch.buffered = [ev for ev in ch.buffered if all(ev is not x for x in impossible)]
        ch.read_mark = 0
        catch_up = [ev for ev in events if ev.epoch == ch.epoch and ev.seq > ch.seq]
        joins = all(ev.seq == ch.seq + 1 + i for i, ev in enumerate(catch_up))
        if ch.state is None or epoch != ch.epoch:
            self._reset(ch, epoch, seq, state)
        elif seq > ch.seq:
            if joins and ch.seq + len(catch_up) == seq:
                for ev in catch_up:
                    self._apply(ch, ev)
            else:  # the history no longer reaches back to us
                self._reset(ch, epoch, seq, state)
        # else: the hub already holds this position or a later one (events arrived while the
        # read was in flight); Redis's own check against the hub's position rules out data loss.

        # Events of another epoch are either older than what Redis just said (dropped) or newer
        # (the channel moved on after our read): one more sync tells which, and converges, as
        # the buffer is empty by then. Events dropped for room need that sync too.
        buffered = [ev for ev in ch.buffered if ev.epoch == ch.epoch]
        again = ch.overflowed or len(buffered) != len(ch.buffered)
        ch.buffered, ch.overflowed = [], False
        ch.live = True
        for i, ev in enumerate(buffered):
            if self.event(ev):
                ch.buffered.extend(buffered[i + 1 :])
                return True, []
        needs: list[tuple[Sink, NeedHistory]] = []
        for sink, w in list(ch.waiting.items()):
            if w.reading is None:
                del ch.waiting[sink]
                if isinstance(need := self._attach(ch, sink, w.since), NeedHistory):
                    needs.append((sink, need))
        if again:
            ch.live = False
        return again, needs

    def _reset(self, ch: Channel, epoch: str, seq: int, state: State) -> None:
        """Take Redis's word for the channel: subscribers, and clients waiting for history that
        no longer applies, get a fresh snapshot."""
        ch.epoch, ch.seq, ch.state = epoch, seq, state
        ch.recent.clear()
        ch.recent_bytes = 0
        ch.snapshot = None
        if ch.subscribers:
            frame = self._snapshot(ch)
            for sink in ch.subscribers:
                sink.send(frame)
        for sink, w in list(ch.waiting.items()):
            if w.reading is not None:
                del ch.waiting[sink]
                self._join_with_snapshot(ch, sink, resuming=True)

    def positions(self) -> dict[str, Position | None]:
        """Where each channel stands, for the sync reads after the subscription went live."""
        return {name: ch.position for name, ch in self.channels.items()}


def _holds_until(state: State, now_ms: int) -> int:
    """Until when a snapshot built at `now_ms` may be sent as is: a short while, and never past
    the expiry of an announcement it holds."""
    until = now_ms + SNAPSHOT_REUSE_MS
    for note in state.get("announcements") or ():
        expires_at = note.get("expires_at") if isinstance(note, dict) else None
        if isinstance(expires_at, int) and now_ms < expires_at < until:
            until = expires_at
    return until
