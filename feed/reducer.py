"""The state reducer: a channel's state after an event, as a pure function of plain values.

The publisher runs it to compute the state it stores in Redis beside the event; each web process
runs it to keep its in-memory copy current; the browser client mirrors it. Expiry uses the event's
own `ts`, never the clock, so every process that applies the same events holds the same state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from feed import keys, models, program, situation
from feed.errors import InvalidMessage
from feed.models import Announcement, Kind, Session, State

MAX_ANNOUNCEMENTS = 50
MAX_CHANGES = 50  # program changes kept on `venue` for the "what changed" lists


class RoomView(State):
    """A room's state as its readers see it at a given time (`room_view`): three more fields,
    which no event sets (docs/protocol.md, State)."""

    now: Session | None
    next: Session | None
    shown: situation.Shown


def initial(channel: str) -> State:
    if channel == keys.VENUE:
        return {"announcements": [], "schedule": None, "changes": []}
    return {
        "status": None,
        "delay": 0,
        "session": None,
        "moved_to": None,
        "announcements": [],
        "name": None,
        "names": {},
        "sessions": [],
    }


def current(state: State, now_ms: int) -> State:
    """The state as a reader should see it at `now_ms`: expired announcements left out, and for
    a room (a state with sessions) its `room_view`."""
    if "sessions" in state:
        return room_view(state, now_ms)
    return {**state, "announcements": _unexpired(state.get("announcements"), now_ms)}


def room_view(state: State, now_ms: int) -> RoomView:
    """A room's `current` state: also the session on now and the next one, with the operator's
    delay applied, and what the room shows."""
    delay = state.get("delay")
    try:
        now, upcoming = program.now_and_next(
            state.get("sessions") or [],
            datetime.fromtimestamp(now_ms / 1000, UTC),
            delay if isinstance(delay, int) else 0,
        )
    except (ValueError, OverflowError, TypeError, KeyError):
        # Sessions this reader cannot place in time: show none rather than fail the snapshot.
        now = upcoming = None
    return {
        **state,
        "announcements": _unexpired(state.get("announcements"), now_ms),
        "now": now,
        "next": upcoming,
        "shown": situation.shown(state, now_ms),  # what the room shows: docs/protocol.md
    }


def apply(state: State, kind: str, data: Any, ts: int) -> State:
    """The state after one event. Unknown kinds and data that break their kind's rules
    (`models.event_data`, the publisher's own check) leave the state exactly as it was, so a newer
    publisher or a damaged entry never breaks an older reader. The browser's reducer
    (web/static/feed-client.js) must agree: tests/reducer_vectors.json holds the cases."""
    try:
        return _apply(state, kind, data, ts)
    except InvalidMessage:
        return state


def _apply(state: State, kind: str, data: object, ts: int) -> State:
    """`apply`, raising InvalidMessage for data that breaks its kind's rules (each kind's
    validator in feed/models.py, the ones `models.event_data` picks)."""
    if kind == Kind.STATUS:
        status = models.status_event(data)
        return {**state, **status, "announcements": _unexpired(state.get("announcements"), ts)}
    if kind == Kind.ANNOUNCE:
        note = models.announcement_event(data)
        announcements = _unexpired(state.get("announcements"), ts)
        kept = [a for a in announcements if a.get("id") != note["id"]]
        kept.append(note)
        return {**state, "announcements": kept[-MAX_ANNOUNCEMENTS:]}
    if kind == Kind.RETRACT:
        gone = models.retraction(data)["id"]
        announcements = _unexpired(state.get("announcements"), ts)
        return {**state, "announcements": [a for a in announcements if a.get("id") != gone]}
    if kind == Kind.PROGRAM:
        clean = models.program_event(data)
        room = clean["room"]
        return {
            **state,
            "name": room.get("name"),
            "names": _names(room.get("names")),
            "sessions": clean["sessions"],
            "announcements": _unexpired(state.get("announcements"), ts),
        }
    if kind == Kind.SCHEDULE:
        clean = models.schedule_event(data)
        held = state.get("changes")
        kept_changes = [*(held if isinstance(held, list) else []), *clean.get("changes", [])]
        return {
            **state,
            "schedule": {"etag": clean["etag"], "conference": clean.get("conference")},
            "changes": kept_changes[-MAX_CHANGES:],
            "announcements": _unexpired(state.get("announcements"), ts),
        }
    return state


def _names(value: object) -> dict[str, str]:
    """A room's name per language; anything but a map of texts is none (an older publisher)."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _unexpired(announcements: object, now_ms: int) -> list[Announcement]:
    if not isinstance(announcements, list):
        return []
    if all(_alive(a, now_ms) for a in announcements):
        return announcements
    return [a for a in announcements if _alive(a, now_ms)]


def _alive(a: object, now_ms: int) -> bool:
    if not isinstance(a, dict):
        return False
    # An expiry that is not a whole number never comes due (the browser reads it the same way).
    expires_at = models.integer(a.get("expires_at"))
    return expires_at is None or expires_at > now_ms
