"""What a room shows: the rule's cases (shared with the page's test), and how snapshots carry it."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feed import reducer, situation
from feed.models import State

CASES_FILE = Path(__file__).resolve().parent / "situation-cases.json"
CASES: dict[str, Any] = json.loads(CASES_FILE.read_text(encoding="utf-8"))
STATUSES = ["upcoming", "starting", "live", "delayed", "full", "ended", "cancelled", "moved"]


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def room_state(case: dict[str, Any]) -> State:
    sessions = copy.deepcopy(CASES["sessions"][case["sessions"]])
    return {**reducer.initial("room:atlas"), **case["state"], "sessions": sessions}


def test_the_cases_cover_every_outcome_and_status() -> None:
    outcomes = {(c["expect"]["source"], c["expect"]["status"]) for c in CASES["cases"]}
    program = {status for source, status in outcomes if source == "program"}
    assert program == {situation.ON, situation.NEXT, situation.OVER, situation.NONE}
    operator = {status for source, status in outcomes if source == "operator"}
    assert operator == set(STATUSES)
    assert len({c["name"] for c in CASES["cases"]}) == len(CASES["cases"])


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["name"])
def test_the_rule_gives_each_case_its_outcome(case: dict[str, Any]) -> None:
    state = room_state(case)
    before = copy.deepcopy(state)
    assert situation.shown(state, ms(case["now"])) == case["expect"]
    assert state == before  # the operator's status and session stay as they were set


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["name"])
def test_a_room_snapshot_carries_the_outcome_beside_the_stored_status(
    case: dict[str, Any],
) -> None:
    state = room_state(case)
    view = reducer.room_view(state, ms(case["now"]))
    assert view["shown"] == case["expect"]
    assert reducer.current(state, ms(case["now"])) == view
    assert (view["status"], view["session"]) == (case["state"]["status"], case["state"]["session"])


def test_the_venue_snapshot_has_no_outcome() -> None:
    assert "shown" not in reducer.current(reducer.initial("venue"), 0)


def test_a_status_about_a_session_stops_holding_when_it_is_over_with_its_delay() -> None:
    start = datetime(2019, 4, 17, 9, tzinfo=UTC)
    sessions = [
        {"id": "a", "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()},
        {
            "id": "b",
            "start": (start + timedelta(hours=1)).isoformat(),
            "end": (start + timedelta(hours=2)).isoformat(),
        },
    ]
    state: State = {
        **reducer.initial("room:atlas"),
        "sessions": sessions,
        "status": "full",
        "delay": 15,
        "session": "a",
    }

    def at(minutes: int) -> situation.Shown:
        return situation.shown(state, int((start + timedelta(minutes=minutes)).timestamp() * 1000))

    assert at(74)["source"] == "operator"  # a ends at 10:00, 10:15 with the delay
    assert at(75) == {"source": "program", "status": "on", "session": "b"}


def test_a_room_that_cannot_be_read_still_gets_an_outcome() -> None:
    odd: Any = {"status": 7, "delay": "late", "session": ["a"], "sessions": "many"}
    assert situation.shown(odd, 0) == {"source": "program", "status": "none", "session": None}
    half: State = {
        "status": "live",
        "sessions": [{"id": "a", "start": "2019-04-17T09:00:00+01:00"}],
    }
    assert situation.shown(half, 0) == {"source": "operator", "status": "live", "session": None}


SESSION_SETS = st.sampled_from(sorted(CASES["sessions"]))


@given(
    sessions=SESSION_SETS,
    status=st.sampled_from([None, *STATUSES]),
    delay=st.integers(0, 1440),
    session=st.sampled_from([None, "a", "b", "c", "d", "late", "owl", "x", "gone"]),
    now=st.integers(ms("2019-04-16T00:00:00+00:00"), ms("2019-04-20T00:00:00+00:00")),
)
def test_the_outcome_never_contradicts_now_and_next(
    sessions: str, status: str | None, delay: int, session: str | None, now: int
) -> None:
    state: State = {
        **reducer.initial("room:atlas"),
        "sessions": CASES["sessions"][sessions],
        "status": status,
        "delay": delay,
        "session": session,
    }
    view = reducer.room_view(state, now)
    shown = view["shown"]
    assert set(shown) == {"source", "status", "session"}
    if shown["source"] == "operator":
        assert (shown["status"], shown["session"]) == (status, session)
        if view["now"] is not None:
            # Never "upcoming" while the program has a session on, "ended" only for that one...
            assert status != "upcoming"
            assert status != "ended" or session == view["now"]["id"]
            # ...and a status about a session is about that one, or the room as a whole.
            named = {s["id"] for s in CASES["sessions"][sessions]}
            assert session not in named or session == view["now"]["id"]
    elif view["now"] is not None:
        assert shown == {"source": "program", "status": "on", "session": view["now"]["id"]}
    elif shown["status"] == "next":
        assert view["next"] is not None and shown["session"] == view["next"]["id"]
    else:
        assert shown["session"] is None
        assert shown["status"] == ("none" if sessions in ("none", "broken") else "over")
