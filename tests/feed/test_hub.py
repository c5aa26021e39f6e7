"""The hub: fan-out, buffering while syncing, and resume, with a recording sink."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from feed import hub as hub_module
from feed import protocol, reducer
from feed.hub import RECENT_BYTES, RECENT_EVENTS, Attached, Channel, Hub, NeedHistory
from feed.models import State
from feed.protocol import Event, Position

CH = "room:atlas"
E1 = "e1"
E2 = "e2"
NOW_MS = 1_700_000_000_000
TS = NOW_MS - 60_000  # events happened a minute before the hub's clock


class Recorder:
    """A real Sink: it keeps every frame it is sent, in order."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.raw.append(frame)

    @property
    def frames(self) -> list[dict[str, Any]]:
        return [orjson.loads(frame) for frame in self.raw]

    def take(self) -> list[dict[str, Any]]:
        frames = self.frames
        self.raw.clear()
        return frames

    def kinds(self) -> list[str]:
        """A compact view: 'snapshot@3', 'event@4', 'subscribed@4' or 'resumed@4'."""
        out = []
        for f in self.frames:
            label = f["type"]
            if label == "subscribed" and f["resumed"]:
                label = "resumed"
            out.append(f"{label}@{f['seq']}")
        return out


def ev(seq: int, epoch: str = E1, channel: str = CH) -> Event:
    """Event number `seq`: a status whose delay is the seq, so every event is distinct."""
    return Event(channel, epoch, seq, "status", {"status": "delayed", "delay": seq}, TS + seq)


def evs(first: int, last: int, epoch: str = E1) -> list[Event]:
    return [ev(seq, epoch) for seq in range(first, last + 1)]


def state_at(seq: int, epoch: str = E1) -> State:
    state = reducer.initial(CH)
    for event in evs(1, seq, epoch):
        state = reducer.apply(state, event.kind, event.data, event.ts)
    return state


def make_hub() -> Hub:
    return Hub(clock=lambda: NOW_MS / 1000)


def loaded(hub: Hub, seq: int, *sinks: Recorder, epoch: str = E1) -> None:
    """Subscribe `sinks` to CH and load it at (epoch, seq); what they were sent is cleared."""
    for sink in sinks:
        assert hub.subscribe(sink, CH, None) is Attached.AWAITS_SYNC
    assert hub.synced(CH, epoch, seq, state_at(seq, epoch), []) == (False, [])
    for sink in sinks:
        sink.take()


def feed(hub: Hub, events: list[Event]) -> None:
    for event in events:
        assert hub.event(event) is False


def snapshot(seq: int, epoch: str = E1, state: State | None = None) -> dict[str, Any]:
    stored = state_at(seq, epoch) if state is None else state
    frame: dict[str, Any] = orjson.loads(
        protocol.snapshot(CH, epoch, seq, reducer.current(stored, NOW_MS))
    )
    return frame


def subscribed(seq: int, resumed: bool, epoch: str = E1) -> dict[str, Any]:
    frame: dict[str, Any] = orjson.loads(protocol.subscribed(CH, epoch, seq, resumed))
    return frame


def event_frames(events: list[Event]) -> list[dict[str, Any]]:
    return [orjson.loads(e.frame()) for e in events]


# ---- first load ----------------------------------------------------------------------------------


def test_subscribe_to_an_unloaded_channel_waits_for_the_load() -> None:
    hub, sink = make_hub(), Recorder()
    assert hub.subscribe(sink, CH, None) is Attached.AWAITS_SYNC
    assert hub.event(ev(1)) is False  # buffered: nothing is live yet
    assert sink.raw == []
    assert hub.positions() == {CH: None}


def test_synced_sends_snapshot_then_subscribed() -> None:
    hub, sink = make_hub(), Recorder()
    hub.subscribe(sink, CH, None)
    assert hub.synced(CH, E1, 3, state_at(3), []) == (False, [])
    assert sink.frames == [snapshot(3), subscribed(3, resumed=False)]
    assert hub.positions() == {CH: Position(E1, 3)}


def test_events_buffered_during_the_first_load_follow_the_snapshot() -> None:
    hub, sink = make_hub(), Recorder()
    hub.subscribe(sink, CH, None)
    feed(hub, [ev(3), ev(4), ev(5)])  # 3 is already in the state Redis reports
    assert hub.synced(CH, E1, 3, state_at(3), []) == (False, [])
    # Waiting clients join once the buffer is applied: the snapshot already holds 4 and 5.
    assert sink.kinds() == ["snapshot@5", "subscribed@5"]
    assert hub.channels[CH].state == state_at(5)


def test_snapshot_hides_announcements_expired_by_the_hub_clock() -> None:
    hub, sink = make_hub(), Recorder()
    hub.subscribe(sink, CH, None)
    state = reducer.initial(CH)
    for aid, expires_at in [("gone", NOW_MS), ("kept", NOW_MS + 1)]:
        data = {"id": aid, "text": aid, "ts": TS, "expires_at": expires_at}
        state = reducer.apply(state, "announce", data, TS)
    hub.synced(CH, E1, 2, state, [])
    sent = sink.frames[0]
    assert sent["type"] == "snapshot"
    assert [a["id"] for a in sent["state"]["announcements"]] == ["kept"]


def test_synced_for_a_channel_nobody_follows_is_ignored() -> None:
    hub = make_hub()
    assert hub.synced(CH, E1, 3, state_at(3), []) == (False, [])
    assert hub.channels == {}


def test_event_for_a_channel_nobody_follows_is_ignored() -> None:
    hub = make_hub()
    assert hub.event(ev(1)) is False
    assert hub.channels == {}


# ---- live events ---------------------------------------------------------------------------------


def test_events_fan_out_in_order_as_the_same_bytes() -> None:
    hub, a, b = make_hub(), Recorder(), Recorder()
    loaded(hub, 0, a, b)
    feed(hub, evs(1, 3))
    assert a.frames == event_frames(evs(1, 3))
    assert b.frames == event_frames(evs(1, 3))
    for frame_a, frame_b in zip(a.raw, b.raw, strict=True):
        assert frame_a is frame_b  # encoded once for every receiver
    assert hub.channels[CH].state == state_at(3)


def test_duplicate_events_are_ignored() -> None:
    hub, sink = make_hub(), Recorder()
    loaded(hub, 0, sink)
    feed(hub, [ev(1), ev(2), ev(1), ev(2)])
    assert sink.kinds() == ["event@1", "event@2"]


def test_an_out_of_order_event_asks_for_a_sync_and_is_buffered() -> None:
    hub, sink = make_hub(), Recorder()
    loaded(hub, 1, sink)
    assert hub.event(ev(3)) is True  # 2 was missed
    assert hub.event(ev(4)) is False  # already waiting for the sync
    assert sink.raw == []
    assert hub.channels[CH].live is False
    # Redis says where the channel stands and gives the missing event.
    assert hub.synced(CH, E1, 2, state_at(2), [ev(2)]) == (False, [])
    assert sink.kinds() == ["event@2", "event@3", "event@4"]
    assert hub.channels[CH].live is True
    assert hub.channels[CH].state == state_at(4)


def test_an_event_of_another_epoch_asks_for_a_sync() -> None:
    hub, sink = make_hub(), Recorder()
    loaded(hub, 4, sink)
    assert hub.event(ev(1, E2)) is True
    assert sink.raw == []


def test_suspend_then_synced_catches_up_without_a_snapshot() -> None:
    hub, sink = make_hub(), Recorder()
    loaded(hub, 2, sink)
    hub.suspend()
    assert hub.event(ev(5)) is False  # buffered while not live
    assert sink.raw == []
    # Redis had 3 and 4 (published while the subscription was down); 5 arrived meanwhile.
    assert hub.synced(CH, E1, 4, state_at(4), evs(3, 4)) == (False, [])
    assert sink.kinds() == ["event@3", "event@4", "event@5"]
    assert hub.channels[CH].state == state_at(5)
    assert hub.channels[CH].live is True


def test_a_gap_in_the_buffer_after_a_sync_asks_for_another() -> None:
    hub, sink = make_hub(), Recorder()
    loaded(hub, 2, sink)
    hub.suspend()
    feed(hub, [ev(6), ev(7)])
    assert hub.synced(CH, E1, 4, state_at(4), evs(3, 4)) == (True, [])
    assert sink.kinds() == ["event@3", "event@4"]
    assert hub.channels[CH].live is False
    sink.take()
    assert hub.synced(CH, E1, 6, state_at(6), evs(5, 6)) == (False, [])
    assert sink.kinds() == ["event@5", "event@6", "event@7"]


def test_synced_with_a_new_epoch_sends_a_fresh_snapshot() -> None:
    hub, a, b = make_hub(), Recorder(), Recorder()
    loaded(hub, 5, a, b)
    hub.suspend()
    feed(hub, [ev(6), ev(2, E2)])  # the old epoch's event is dropped, the new one's kept
    new_state = state_at(1, E2)
    # The dropped event of another epoch asks for one more sync to confirm where Redis stands.
    assert hub.synced(CH, E2, 1, new_state, []) == (True, [])
    for sink in (a, b):
        assert sink.frames == [snapshot(1, E2, new_state), orjson.loads(ev(2, E2).frame())]
    assert hub.positions() == {CH: Position(E2, 2)}


def test_synced_with_history_that_no_longer_joins_sends_a_snapshot() -> None:
    hub, sink = make_hub(), Recorder()
    loaded(hub, 2, sink)
    hub.suspend()
    # Redis trimmed its history: the events it still has start after 3.
    assert hub.synced(CH, E1, 10, state_at(10), evs(8, 10)) == (False, [])
    assert sink.frames == [snapshot(10)]


# ---- resume --------------------------------------------------------------------------------------


def test_resume_from_the_ring_sends_exactly_the_missed_events() -> None:
    hub, keeper, late = make_hub(), Recorder(), Recorder()
    loaded(hub, 0, keeper)
    feed(hub, evs(1, 10))
    assert hub.subscribe(late, CH, Position(E1, 7)) is Attached.JOINED
    assert late.frames == [*event_frames(evs(8, 10)), subscribed(10, resumed=True)]
    feed(hub, [ev(11)])
    assert late.kinds()[-1] == "event@11"


def test_resume_when_up_to_date_sends_only_subscribed() -> None:
    hub, keeper, late = make_hub(), Recorder(), Recorder()
    loaded(hub, 4, keeper)
    assert hub.subscribe(late, CH, Position(E1, 4)) is Attached.JOINED
    assert late.frames == [subscribed(4, resumed=True)]


def test_resume_at_the_edge_of_the_ring() -> None:
    hub, keeper, edge, beyond = make_hub(), Recorder(), Recorder(), Recorder()
    loaded(hub, 0, keeper)
    last = RECENT_EVENTS + 10
    feed(hub, evs(1, last))
    assert hub.subscribe(edge, CH, Position(E1, last - RECENT_EVENTS)) is Attached.JOINED
    assert edge.frames == [
        *event_frames(evs(last - RECENT_EVENTS + 1, last)),
        subscribed(last, resumed=True),
    ]
    need = hub.subscribe(beyond, CH, Position(E1, last - RECENT_EVENTS - 1))
    assert need == NeedHistory(CH, Position(E1, last - RECENT_EVENTS - 1), last)
    assert beyond.raw == []


def test_resume_beyond_the_ring_reads_history_then_pending_live_events() -> None:
    hub, keeper, late = make_hub(), Recorder(), Recorder()
    loaded(hub, 0, keeper)
    last = RECENT_EVENTS + 20
    feed(hub, evs(1, last))
    need = hub.subscribe(late, CH, Position(E1, 2))
    assert need == NeedHistory(CH, Position(E1, 2), last)
    feed(hub, evs(last + 1, last + 2))  # published while the history is read
    assert late.raw == []
    assert isinstance(need, NeedHistory)
    hub.history(late, need, evs(3, last))
    assert late.frames == [*event_frames(evs(3, last + 2)), subscribed(last + 2, resumed=True)]
    feed(hub, [ev(last + 3)])
    assert late.kinds()[-1] == f"event@{last + 3}"


def test_a_history_read_overtaken_by_a_new_subscribe_is_ignored() -> None:
    hub, keeper, late = make_hub(), Recorder(), Recorder()
    loaded(hub, 0, keeper)
    last = RECENT_EVENTS + 20
    feed(hub, evs(1, last))
    first = hub.subscribe(late, CH, Position(E1, 2))
    feed(hub, evs(last + 1, last + 2))
    second = hub.subscribe(late, CH, Position(E1, 5))  # the client asked again meanwhile
    assert isinstance(first, NeedHistory) and isinstance(second, NeedHistory)
    assert second.upto == last + 2
    hub.history(late, first, evs(3, last))  # the older read lands first: not for this request
    assert late.raw == []
    hub.history(late, second, evs(6, last + 2))
    assert late.frames == [*event_frames(evs(6, last + 2)), subscribed(last + 2, resumed=True)]


def test_history_ignores_events_outside_the_range() -> None:
    hub, keeper, late = make_hub(), Recorder(), Recorder()
    loaded(hub, 0, keeper)
    last = RECENT_EVENTS + 5
    feed(hub, evs(1, last))
    need = hub.subscribe(late, CH, Position(E1, 1))
    assert isinstance(need, NeedHistory)
    hub.history(late, need, [ev(1), *evs(2, last), ev(last + 1)])
    assert late.frames == [*event_frames(evs(2, last)), subscribed(last, resumed=True)]


@pytest.mark.parametrize(
    "history",
    [
        None,  # Redis could not say
        [],  # nothing any more
        [e for e in evs(3, RECENT_EVENTS + 20) if e.seq != 50],  # a hole in the middle
        evs(10, RECENT_EVENTS + 20),  # trimmed: starts too late
        evs(3, RECENT_EVENTS + 10),  # ends too early
        evs(3, RECENT_EVENTS + 20, E2),  # another epoch
    ],
    ids=["none", "empty", "hole", "trimmed", "short", "epoch"],
)
def test_history_that_does_not_join_gives_a_snapshot(history: list[Event] | None) -> None:
    hub, keeper, late = make_hub(), Recorder(), Recorder()
    loaded(hub, 0, keeper)
    last = RECENT_EVENTS + 20
    feed(hub, evs(1, last))
    need = hub.subscribe(late, CH, Position(E1, 2))
    assert isinstance(need, NeedHistory)
    hub.history(late, need, history)
    assert late.frames == [snapshot(last), subscribed(last, resumed=False)]
    feed(hub, [ev(last + 1)])
    assert late.kinds()[-1] == f"event@{last + 1}"


@pytest.mark.parametrize(
    "since", [Position("old-epoch", 3), Position(E1, 9)], ids=["unknown-epoch", "seq-ahead"]
)
def test_resume_from_an_unknown_position_gives_a_snapshot(since: Position) -> None:
    hub, keeper, late = make_hub(), Recorder(), Recorder()
    loaded(hub, 5, keeper)
    assert hub.subscribe(late, CH, since) is Attached.JOINED
    assert late.frames == [snapshot(5), subscribed(5, resumed=False)]


def test_a_channel_reset_during_a_history_read_gives_a_snapshot() -> None:
    hub, keeper, late = make_hub(), Recorder(), Recorder()
    loaded(hub, 0, keeper)
    last = RECENT_EVENTS + 5
    feed(hub, evs(1, last))
    need = hub.subscribe(late, CH, Position(E1, 1))
    assert isinstance(need, NeedHistory)
    hub.suspend()
    hub.synced(CH, E2, 0, reducer.initial(CH), [])
    assert late.frames == [snapshot(0, E2, reducer.initial(CH)), subscribed(0, False, E2)]
    late.take()
    hub.history(late, need, evs(2, last))  # too late: ignored
    assert late.raw == []


# ---- clients waiting for the first load with a position ------------------------------------------


def test_waiting_clients_with_a_position_resume_after_the_first_load() -> None:
    hub = make_hub()
    fresh, current, behind, other = Recorder(), Recorder(), Recorder(), Recorder()
    assert hub.subscribe(fresh, CH, None) is Attached.AWAITS_SYNC
    assert hub.subscribe(current, CH, Position(E1, 5)) is Attached.AWAITS_SYNC
    assert hub.subscribe(behind, CH, Position(E1, 2)) is Attached.AWAITS_SYNC
    assert hub.subscribe(other, CH, Position("older", 9)) is Attached.AWAITS_SYNC
    feed(hub, [ev(6)])  # arrives before the load completes

    gap, needs = hub.synced(CH, E1, 5, state_at(5), [])
    assert gap is False
    assert needs == [(behind, NeedHistory(CH, Position(E1, 2), 6))]
    assert fresh.kinds() == ["snapshot@6", "subscribed@6"]
    assert current.kinds() == ["event@6", "resumed@6"]
    assert other.kinds() == ["snapshot@6", "subscribed@6"]
    assert behind.raw == []

    hub.history(behind, needs[0][1], evs(3, 6))
    assert behind.frames == [*event_frames(evs(3, 6)), subscribed(6, resumed=True)]


# ---- unsubscribe ---------------------------------------------------------------------------------


def test_unsubscribe_stops_delivery() -> None:
    hub, a, b = make_hub(), Recorder(), Recorder()
    loaded(hub, 0, a, b)
    feed(hub, [ev(1)])
    hub.unsubscribe(a, CH)
    feed(hub, [ev(2)])
    assert a.kinds() == ["event@1"]
    assert b.kinds() == ["event@1", "event@2"]


def test_unsubscribe_before_the_first_load() -> None:
    hub, sink = make_hub(), Recorder()
    hub.subscribe(sink, CH, None)
    hub.unsubscribe(sink, CH)
    hub.synced(CH, E1, 3, state_at(3), [])
    feed(hub, [ev(4)])
    assert sink.raw == []


def test_unsubscribe_during_a_history_read() -> None:
    hub, keeper, late = make_hub(), Recorder(), Recorder()
    loaded(hub, 0, keeper)
    last = RECENT_EVENTS + 5
    feed(hub, evs(1, last))
    need = hub.subscribe(late, CH, Position(E1, 1))
    assert isinstance(need, NeedHistory)
    hub.unsubscribe(late, CH)
    hub.history(late, need, evs(2, last))
    feed(hub, [ev(last + 1)])
    assert late.raw == []


def test_unsubscribe_from_an_unknown_channel_is_harmless() -> None:
    hub = make_hub()
    hub.unsubscribe(Recorder(), "venue")
    assert hub.channels == {}


def test_resubscribing_gives_a_fresh_start_without_duplicate_delivery() -> None:
    hub, sink = make_hub(), Recorder()
    loaded(hub, 3, sink)
    assert hub.subscribe(sink, CH, None) is Attached.JOINED
    feed(hub, [ev(4)])
    assert sink.kinds() == ["snapshot@3", "subscribed@3", "event@4"]


# ---- known gaps (see the reasons) ----------------------------------------------------------------


def test_a_buffered_event_of_a_newer_epoch_asks_for_another_sync() -> None:
    hub, sink = make_hub(), Recorder()
    loaded(hub, 3, sink)
    hub.suspend()
    # The sync read saw (e1, 3); the channel then moved to e2 and e2's first event came in first.
    feed(hub, [ev(1, E2)])
    gap, _ = hub.synced(CH, E1, 3, state_at(3), [])
    assert gap is True


def test_events_dropped_past_the_buffer_limit_ask_for_another_sync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "MAX_BUFFERED", 5)
    hub, sink = make_hub(), Recorder()
    loaded(hub, 0, sink)
    hub.suspend()
    feed(hub, evs(1, 7))  # 6 and 7 do not fit in the buffer
    gap, _ = hub.synced(CH, E1, 0, state_at(0), [])  # the read was older than all of them
    assert sink.kinds() == [f"event@{i}" for i in range(1, 6)]
    assert gap is True  # else the hub stays live at seq 5 though Redis is at 7


def test_a_stale_sync_of_a_live_channel_does_not_move_it_back() -> None:
    hub, sink = make_hub(), Recorder()
    loaded(hub, 1, sink)
    before = list(sink.kinds())
    hub.channels[CH].live = True
    feed(hub, evs(2, 3))  # delivered live while a second read (at seq 1) was in flight
    assert hub.synced(CH, E1, 1, state_at(1), []) == (False, [])
    assert sink.kinds() == [*before, "event@2", "event@3"]  # no snapshot back at 1
    assert hub.positions() == {CH: Position(E1, 3)}


def test_a_client_ahead_of_a_cut_off_hub_waits_instead_of_going_back() -> None:
    hub, keeper, ahead = make_hub(), Recorder(), Recorder()
    loaded(hub, 5, keeper)
    hub.suspend()  # Redis is gone; another process had already delivered 6..9
    assert hub.subscribe(ahead, CH, Position(E1, 9)) is Attached.AWAITS_SYNC
    assert ahead.raw == []
    gap, needs = hub.synced(CH, E1, 10, state_at(10), evs(6, 10))
    assert (gap, needs) == (False, [])
    assert ahead.kinds() == ["event@10", "resumed@10"]


def test_idle_channels_are_evicted_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "MAX_IDLE_CHANNELS", 2)
    hub, sink = make_hub(), Recorder()
    for name in ("room:a", "room:b", "room:c"):
        hub.subscribe(sink, name, None)
        hub.synced(name, E1, 0, reducer.initial(name), [])
    for name in ("room:a", "room:b", "room:c"):
        hub.unsubscribe(sink, name)
    assert sorted(hub.channels) == ["room:b", "room:c"]
    hub.subscribe(sink, "room:b", None)  # followed again: no longer idle
    hub.subscribe(sink, "room:d", None)
    hub.unsubscribe(sink, "room:d")
    assert sorted(hub.channels) == ["room:b", "room:c", "room:d"]


def test_an_event_redis_never_stored_is_dropped_instead_of_syncing_forever() -> None:
    hub, sink = make_hub(), Recorder()
    loaded(hub, 1, sink)
    assert hub.event(ev(1000)) is True  # far ahead: a stray message on the bus
    hub.sync_begins(CH)  # the relay reads Redis after it arrived...
    # ...and Redis is at 1: an event it never had cannot be waited for.
    assert hub.synced(CH, E1, 1, state_at(1), []) == (False, [])
    assert hub.channels[CH].buffered == [] and hub.channels[CH].live is True
    assert hub.counts.impossible == 1
    hub.event(ev(2))
    assert sink.kinds() == ["event@2"]


def test_an_event_ahead_that_came_during_the_read_is_kept_for_the_next_sync() -> None:
    hub, sink = make_hub(), Recorder()
    loaded(hub, 1, sink)
    assert hub.event(ev(3)) is True
    hub.sync_begins(CH)
    hub.event(ev(4))  # arrives while the read is in flight: it may well be real
    again, _ = hub.synced(CH, E1, 3, state_at(3), [ev(2), ev(3)])
    assert again is False and sink.kinds() == ["event@2", "event@3", "event@4"]
    assert hub.counts.impossible == 0


# ---- snapshots: encoded once per channel and seq (issue 18 §3) ---------------------------------


def _note(note_id: str, expires_at: int | None) -> Event:
    data = {"id": note_id, "text": "Salle pleine", "priority": "info", "rooms": ["atlas"],
            "ts": TS, "expires_at": expires_at}  # fmt: skip
    return Event(CH, E1, 4, "announce", data, TS)


def test_subscribers_of_the_same_seq_share_one_encoding() -> None:
    hub, first = make_hub(), Recorder()
    loaded(hub, 3, first)
    late = [Recorder() for _ in range(500)]
    for sink in late:
        hub.subscribe(sink, CH, None)
    frames = {id(sink.raw[0]) for sink in late}
    assert len(frames) == 1  # the very same bytes object for all of them
    assert late[0].frames == [snapshot(3), subscribed(3, resumed=False)]
    assert hub.counts.snapshot_encodings == 1  # the first load's, for all 501
    assert hub.counts.snapshot_reuses == 500

    feed(hub, [ev(4)])  # a new seq: encoded again, once
    for sink in late[:10]:
        hub.subscribe(sink, CH, None)
    assert hub.counts.snapshot_encodings == 2
    assert orjson.loads(late[0].raw[-2])["seq"] == 4


def test_a_reused_snapshot_never_outlives_an_announcement_it_holds() -> None:
    now = [NOW_MS / 1000]
    hub = Hub(clock=lambda: now[0])
    sink = Recorder()
    loaded(hub, 3, sink)
    feed(hub, [_note("brief", NOW_MS + 200)])
    hub.subscribe(Recorder(), CH, None)
    encodings = hub.counts.snapshot_encodings
    now[0] = (NOW_MS + 100) / 1000  # still shown: the same bytes
    again = Recorder()
    hub.subscribe(again, CH, None)
    assert hub.counts.snapshot_encodings == encodings
    assert [a["id"] for a in again.frames[0]["state"]["announcements"]] == ["brief"]
    now[0] = (NOW_MS + 200) / 1000  # expired: not in any snapshot from now on
    after = Recorder()
    hub.subscribe(after, CH, None)
    assert hub.counts.snapshot_encodings == encodings + 1
    assert after.frames[0]["state"]["announcements"] == []


def test_past_the_reuse_window_the_same_view_keeps_its_bytes() -> None:
    now = [NOW_MS / 1000]
    hub = Hub(clock=lambda: now[0])
    loaded(hub, 3, Recorder())
    one, two = Recorder(), Recorder()
    hub.subscribe(one, CH, None)
    now[0] += 5 * hub_module.SNAPSHOT_REUSE_MS / 1000
    hub.subscribe(two, CH, None)
    assert one.raw[0] is two.raw[0]


def test_the_resume_ring_is_bounded_by_bytes_too() -> None:
    ch = Channel(CH)
    frame = b"x" * (RECENT_BYTES // 10 + 1)  # ten of these are past the byte bound
    for seq in range(1, 31):
        ch.remember(seq, frame)
        assert ch.recent_bytes == sum(len(f) for _, f in ch.recent) <= RECENT_BYTES
    assert [seq for seq, _ in ch.recent] == list(range(22, 31))  # the newest nine
    huge = b"y" * (RECENT_BYTES + 1)
    ch.remember(31, huge)
    assert list(ch.recent) == [(31, huge)]  # the newest is kept, however large
    for seq in range(32, 32 + RECENT_EVENTS + 5):
        ch.remember(seq, b"z")
    assert len(ch.recent) == RECENT_EVENTS and ch.recent[-1][0] == 31 + RECENT_EVENTS + 5
