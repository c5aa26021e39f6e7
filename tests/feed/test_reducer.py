"""The pure state reducer."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from feed import reducer
from feed.models import Announcement, State
from feed.reducer import MAX_ANNOUNCEMENTS

TS = 1_700_000_000_000
ROOM = "room:atlas"


def ann(aid: str, *, ts: int = TS, expires_at: int | None = None, text: str = "hi") -> Announcement:
    return {
        "id": aid,
        "text": text,
        "priority": "info",
        "rooms": [],
        "ts": ts,
        "expires_at": expires_at,
    }


def ids(state: State) -> list[str]:
    return [a["id"] for a in state["announcements"]]


def test_initial_room_state() -> None:
    assert reducer.initial(ROOM) == {
        "status": None,
        "delay": 0,
        "session": None,
        "moved_to": None,
        "announcements": [],
        "name": None,
        "names": {},
        "sessions": [],
    }


def test_initial_venue_state() -> None:
    assert reducer.initial("venue") == {"announcements": [], "schedule": None, "changes": []}


def test_initial_states_are_fresh_objects() -> None:
    first = reducer.initial(ROOM)
    first["announcements"].append(ann("x"))
    assert reducer.initial(ROOM)["announcements"] == []


def test_status_applied() -> None:
    state = reducer.apply(
        reducer.initial(ROOM), "status", {"status": "delayed", "delay": 10, "session": "s1"}, TS
    )
    assert state == {
        **reducer.initial(ROOM),
        "status": "delayed",
        "delay": 10,
        "session": "s1",
    }


def test_status_replaces_the_previous_one_entirely() -> None:
    state = reducer.apply(reducer.initial(ROOM), "status", {"status": "delayed", "delay": 10}, TS)
    state = reducer.apply(state, "status", {"status": "moved", "moved_to": "hall-b"}, TS + 1)
    assert state["status"] == "moved"
    assert state["delay"] == 0
    assert state["moved_to"] == "hall-b"


def test_status_keeps_announcements() -> None:
    state = reducer.apply(reducer.initial(ROOM), "announce", ann("a1"), TS)
    state = reducer.apply(state, "status", {"status": "live"}, TS + 1)
    assert ids(state) == ["a1"]
    assert state["status"] == "live"


def test_announce_appended() -> None:
    state = reducer.initial("venue")
    state = reducer.apply(state, "announce", ann("a1"), TS)
    state = reducer.apply(state, "announce", ann("a2"), TS + 1)
    assert ids(state) == ["a1", "a2"]
    assert state["announcements"][0] == ann("a1")


def test_announce_with_a_known_id_replaces_it() -> None:
    state = reducer.initial("venue")
    for aid in ("a1", "a2", "a3"):
        state = reducer.apply(state, "announce", ann(aid), TS)
    state = reducer.apply(state, "announce", ann("a1", text="corrected"), TS + 1)
    assert ids(state) == ["a2", "a3", "a1"]
    assert state["announcements"][-1]["text"] == "corrected"


def test_announce_normalises_the_announcement() -> None:
    data = {**ann("a1"), "rooms": ["hall-b", "atlas", "atlas"], "priority": "important"}
    state = reducer.apply(reducer.initial("venue"), "announce", data, TS)
    assert state["announcements"][0]["rooms"] == ["atlas", "hall-b"]
    assert state["announcements"][0]["priority"] == "important"


def test_announcements_capped_keeping_the_newest() -> None:
    state = reducer.initial("venue")
    total = MAX_ANNOUNCEMENTS + 5
    for i in range(total):
        state = reducer.apply(state, "announce", ann(f"a{i}"), TS + i)
    assert len(state["announcements"]) == MAX_ANNOUNCEMENTS
    assert ids(state) == [f"a{i}" for i in range(5, total)]


def test_retract() -> None:
    state = reducer.initial("venue")
    for aid in ("a1", "a2"):
        state = reducer.apply(state, "announce", ann(aid), TS)
    state = reducer.apply(state, "retract", {"id": "a1"}, TS + 1)
    assert ids(state) == ["a2"]


def test_retract_of_an_unknown_id_changes_nothing_visible() -> None:
    state = reducer.apply(reducer.initial("venue"), "announce", ann("a1"), TS)
    assert reducer.apply(state, "retract", {"id": "nope"}, TS + 1) == state


def test_expired_announcements_pruned_by_the_event_ts() -> None:
    state = reducer.initial("venue")
    state = reducer.apply(state, "announce", ann("short", expires_at=TS + 100), TS)
    state = reducer.apply(state, "announce", ann("long", expires_at=TS + 10_000), TS)
    state = reducer.apply(state, "announce", ann("forever"), TS)
    # Just before the expiry the announcement is still there ...
    before = reducer.apply(state, "announce", ann("x"), TS + 99)
    assert ids(before) == ["short", "long", "forever", "x"]
    # ... and the first event at or after it prunes it, whatever the kind.
    for kind, data in [("announce", ann("x")), ("retract", {"id": "none"})]:
        after = reducer.apply(state, kind, data, TS + 100)
        assert "short" not in ids(after)
        assert {"long", "forever"} <= set(ids(after))


def test_status_event_also_prunes_expired_announcements() -> None:
    state = reducer.apply(reducer.initial(ROOM), "announce", ann("a", expires_at=TS + 1), TS)
    state = reducer.apply(state, "status", {"status": "live"}, TS + 1)
    assert state["announcements"] == []


def test_expiry_is_deterministic_and_ignores_the_clock() -> None:
    # The same events give the same state, whenever they are applied: ts long in the past.
    old = 1_000
    events = [
        ("announce", ann("a", ts=old, expires_at=old + 10)),
        ("announce", ann("b", ts=old)),
    ]
    results = []
    for _ in range(2):
        state = reducer.initial("venue")
        for kind, data in events:
            state = reducer.apply(state, kind, data, old)
        results.append(state)
    assert results[0] == results[1]
    assert ids(results[0]) == ["a", "b"]  # not expired at ts `old`, though long gone by the clock


def test_current_hides_expired() -> None:
    state = reducer.initial("venue")
    state = reducer.apply(state, "announce", ann("a", expires_at=TS + 100), TS)
    state = reducer.apply(state, "announce", ann("b"), TS)
    assert reducer.current(state, TS + 99) == state
    shown = reducer.current(state, TS + 100)
    assert ids(shown) == ["b"]
    assert ids(state) == ["a", "b"]  # the stored state is not changed


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("mystery", {"status": "live"}),
        ("", {}),
        ("status", None),
        ("status", "live"),
        ("status", {"status": "sleeping"}),
        ("status", {"status": "live", "delay": -5}),
        ("status", {"status": "live", "delay": True}),
        ("status", {"status": "live", "moved_to": "hall-b"}),
        ("announce", None),
        ("announce", {**ann("a9"), "text": ""}),
        ("announce", {**ann("a9"), "id": ""}),
        ("announce", {k: v for k, v in ann("a9").items() if k != "id"}),
        ("announce", {**ann("a9"), "ts": "yesterday"}),
        ("announce", {**ann("a9"), "expires_at": 1.5}),
        ("announce", {**ann("a9"), "expires_at": TS - 1}),
        ("announce", {**ann("a9"), "priority": "urgent"}),
        ("announce", {**ann("a9"), "rooms": ["Bad Room"]}),
        ("retract", None),
        ("retract", ["a1"]),
    ],
)
def test_unknown_kind_or_malformed_data_returns_the_same_state(kind: str, data: Any) -> None:
    state = reducer.apply(reducer.initial(ROOM), "status", {"status": "live"}, TS)
    state = reducer.apply(state, "announce", ann("a1", expires_at=TS + 5), TS)
    # Even with an expired announcement in it, a rejected event leaves the state untouched.
    assert reducer.apply(state, kind, data, TS + 10) is state


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("status", {"status": "moved", "moved_to": "hall-b", "delay": 3, "session": "s"}),
        ("announce", ann("a3")),
        ("announce", ann("a1", text="replaced")),
        ("retract", {"id": "a1"}),
        ("mystery", {}),
    ],
)
def test_apply_never_mutates_its_input(kind: str, data: Any) -> None:
    state = reducer.initial(ROOM)
    state = reducer.apply(state, "announce", ann("a1", expires_at=TS + 50), TS)
    state = reducer.apply(state, "announce", ann("a2"), TS)
    state_before, data_before = copy.deepcopy(state), copy.deepcopy(data)
    reducer.apply(state, kind, data, TS + 100)  # also prunes the expired a1
    assert state == state_before
    assert data == data_before
