"""What a room shows: the operator's status while it still holds, else what the program says.

The stored `status` and `session` stay exactly as the operator set them; this is computed beside
them, at a given time, because time passes between events: a status about a session stops holding
when that session is over, without any event. The browser computes the same outcome every second
(`shown` in web/static/feed-client.js); both follow docs/protocol.md ("What a room shows") and are
checked against the same cases (tests/feed/situation-cases.json).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from feed import program
from feed.models import State

OPERATOR = "operator"
PROGRAM = "program"

# What the program says when no operator status holds.
ON = "on"  # a session is on now
NEXT = "next"  # nothing on now; the next session starts later the same venue day
OVER = "over"  # nothing more today (the room may have sessions on another day)
NONE = "none"  # the room has no sessions at all

# Statuses that say a session has not begun, or that the room is between sessions: beside a
# session on now they would contradict it, so they never hold while one is on.
_NOT_WHILE_ON = frozenset({"upcoming", "ended"})


class Shown(TypedDict):
    """What a room shows (see `shown`)."""

    source: str  # OPERATOR or PROGRAM
    status: str  # the operator's status, or ON, NEXT, OVER or NONE
    session: str | None


def shown(state: State, now_ms: int) -> Shown:
    """`{"source", "status", "session"}` for a room's state at `now_ms` (Unix milliseconds).

    `source` is "operator" when the room's status holds, with that status and the session it
    names; else "program", with one of "on", "next", "over", "none" and the session concerned.
    """
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    delay = state.get("delay")
    delay = delay if isinstance(delay, int) and not isinstance(delay, bool) else 0
    sessions = state.get("sessions")
    try:
        sessions = sessions if isinstance(sessions, list) else []
        current, upcoming = program.now_and_next(sessions, now, delay)
        named = _named(sessions, state.get("session"), delay)
    except (ValueError, OverflowError, TypeError, KeyError, AttributeError):
        # Sessions this reader cannot place in time: the room is as good as without a program.
        sessions, current, upcoming, named = [], None, None, None
    status = state.get("status")
    if isinstance(status, str) and _holds(status, named, current, bool(sessions), now):
        session = state.get("session")
        return {"source": OPERATOR, "status": status, "session": session}
    if current is not None:
        return {"source": PROGRAM, "status": ON, "session": current.get("id")}
    if upcoming is not None and _same_day(now, datetime.fromisoformat(upcoming["start"])):
        return {"source": PROGRAM, "status": NEXT, "session": upcoming.get("id")}
    return {"source": PROGRAM, "status": OVER if sessions else NONE, "session": None}


def _named(
    sessions: list[dict[str, Any]], session_id: object, delay: int
) -> tuple[datetime, datetime] | None:
    """The shifted (start, end) of the session the status names, if it is one of the room's."""
    if not isinstance(session_id, str):
        return None
    shift = timedelta(minutes=delay)
    for s in sessions:
        if s.get("id") == session_id:
            start, end = datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"])
            return start + shift, end + shift
    return None


def _holds(
    status: str,
    named: tuple[datetime, datetime] | None,
    current: dict[str, Any] | None,
    has_sessions: bool,
    now: datetime,
) -> bool:
    if named is not None:
        start, end = named
        if end <= now:
            return False  # its session is over: the next one inherits nothing
        if start > now:
            return current is None  # about a later session: not while another one is on
        return status != "upcoming"  # its session has begun
    if not has_sessions:
        return True  # nothing in the program to contradict it
    if status in _NOT_WHILE_ON:
        return current is None
    return True  # about the room, not a session: until the operator says otherwise


def _same_day(now: datetime, start: datetime) -> bool:
    """Whether `start` falls on the venue's day of `now`, read with the UTC offset the program
    gives `start` (sessions carry the venue's offset at their own instant)."""
    return now.astimezone(start.tzinfo).date() == start.date()
