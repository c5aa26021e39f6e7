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
from feed.models import Kind

MAX_ANNOUNCEMENTS = 50
MAX_CHANGES = 50  # program changes kept on `venue` for the "what changed" lists

State = dict[str, Any]


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
    a room the session on now and the next one, with the operator's delay applied."""
    view = {**state, "announcements": _unexpired(state.get("announcements"), now_ms)}
    if "sessions" in state:
        delay = state.get("delay")
        try:
            view["now"], view["next"] = program.now_and_next(
                state.get("sessions") or [],
                datetime.fromtimestamp(now_ms / 1000, UTC),
                delay if isinstance(delay, int) else 0,
            )
        except (ValueError, OverflowError, TypeError, KeyError):
            # Sessions this reader cannot place in time: show none rather than fail the snapshot.
            view["now"] = view["next"] = None
        view["shown"] = situation.shown(state, now_ms)  # what the room shows: docs/protocol.md
    return view


def apply(state: State, kind: str, data: Any, ts: int) -> State:
    """The state after one event. Unknown kinds and malformed data leave the state as it was,
    so a newer publisher or a damaged entry never breaks an older reader."""
    announcements = _unexpired(state.get("announcements"), ts)
    try:
        if kind == Kind.STATUS and isinstance(data, dict):
            clean = models.status_data(
                data.get("status"),
                delay=data.get("delay", 0),
                session=data.get("session"),
                moved_to=data.get("moved_to"),
            )
            return {**state, **clean, "announcements": announcements}
        if kind == Kind.ANNOUNCE and isinstance(data, dict):
            new = _announcement(data)
            kept = [a for a in announcements if a.get("id") != new["id"]]
            kept.append(new)
            return {**state, "announcements": kept[-MAX_ANNOUNCEMENTS:]}
        if kind == Kind.PROGRAM and isinstance(data, dict):
            room, sessions = data.get("room"), data.get("sessions")
            if isinstance(room, dict) and program.valid_sessions(sessions):
                name = room.get("name") if isinstance(room.get("name"), str) else None
                names = _names(room.get("names"))
                return {
                    **state,
                    "name": name,
                    "names": names,
                    "sessions": sessions,
                    "announcements": announcements,
                }
        if kind == Kind.SCHEDULE and isinstance(data, dict):
            changes = data.get("changes")
            kept = [*(state.get("changes") or []), *(changes if isinstance(changes, list) else [])]
            schedule = {"etag": data.get("etag"), "conference": data.get("conference")}
            return {
                **state,
                "schedule": schedule,
                "changes": kept[-MAX_CHANGES:],
                "announcements": announcements,
            }
        if kind == Kind.RETRACT and isinstance(data, dict):
            gone = data.get("id")
            return {**state, "announcements": [a for a in announcements if a.get("id") != gone]}
    except InvalidMessage:
        pass
    return state


def _names(value: object) -> dict[str, str]:
    """A room's name per language; anything but a map of texts is none (an older publisher)."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _announcement(data: dict[str, Any]) -> dict[str, Any]:
    ts, expires_at = data.get("ts"), data.get("expires_at")
    if not isinstance(ts, int) or (expires_at is not None and not isinstance(expires_at, int)):
        raise InvalidMessage("announcement times must be integers")
    aid = data.get("id")
    if not isinstance(aid, str) or not aid:
        raise InvalidMessage("an announcement needs an id")
    rooms = data.get("rooms", [])
    return models.announcement(
        data.get("text"),
        rooms=rooms if isinstance(rooms, list) else [],
        priority=data.get("priority", models.Priority.INFO),
        ts=ts,
        expires_at=expires_at,
        announcement_id=aid,
    )


def _unexpired(announcements: object, now_ms: int) -> list[dict[str, Any]]:
    if not isinstance(announcements, list):
        return []
    if all(_alive(a, now_ms) for a in announcements):
        return announcements
    return [a for a in announcements if _alive(a, now_ms)]


def _alive(a: object, now_ms: int) -> bool:
    if not isinstance(a, dict):
        return False
    expires_at = a.get("expires_at")
    return expires_at is None or not isinstance(expires_at, int) or expires_at > now_ms
