"""A room's sessions as iCalendar (RFC 5545), for people who follow a room in their calendar.

Pure functions. The ledger (kept in Redis by the importer, see `advance`) remembers every
session ever imported with its SEQUENCE: it goes up each time the session's time, room or title
changes, and when a session leaves the program it stays in the calendar as STATUS:CANCELLED, so
calendar apps update or strike it instead of keeping a stale copy.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

PRODID = "-//live-session-feed//calendar//EN"
_FIELDS = ("title", "room", "start", "end")  # what, changed, makes calendars update


def fingerprint(session: dict[str, Any]) -> str:
    return hashlib.sha256("\x1f".join(str(session.get(f)) for f in _FIELDS).encode()).hexdigest()[
        :16
    ]


def advance(
    ledger: dict[str, dict[str, Any]], sessions: list[dict[str, Any]], now_ms: int
) -> dict[str, dict[str, Any]]:
    """The ledger entries that change with a newly imported program's `sessions` (API shape):
    new sessions at SEQUENCE 0, changed ones one higher, vanished ones cancelled."""
    updates: dict[str, dict[str, Any]] = {}
    seen = set()
    for s in sessions:
        seen.add(s["id"])
        mark = fingerprint(s)
        entry = ledger.get(s["id"])
        if entry is None:
            updates[s["id"]] = {"sequence": 0, "mark": mark, "cancelled": False,
                                "session": s, "modified": now_ms}  # fmt: skip
        elif entry.get("mark") != mark or entry.get("cancelled") or entry.get("session") != s:
            bump = entry.get("mark") != mark or bool(entry.get("cancelled"))
            updates[s["id"]] = {"sequence": int(entry.get("sequence", 0)) + bump, "mark": mark,
                                "cancelled": False, "session": s, "modified": now_ms}  # fmt: skip
    for sid, entry in ledger.items():
        if sid not in seen and not entry.get("cancelled"):
            updates[sid] = {**entry, "sequence": int(entry.get("sequence", 0)) + 1,
                            "cancelled": True, "modified": now_ms}  # fmt: skip
    return updates


def _text(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _fold(line: str) -> list[str]:
    """Lines of at most 75 octets, continued with a space, never cutting a UTF-8 character."""
    out, current, size = [], "", 0
    for char in line:
        width = len(char.encode())
        if size + width > 75:
            out.append(current)
            current, size = " ", 1
        current += char
        size += width
    out.append(current)
    return out


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")


def render(
    conference: dict[str, Any],
    room: dict[str, Any],
    ledger: dict[str, dict[str, Any]],
) -> str:
    """The calendar of `room` ({id, name}): every session the ledger knows in that room."""
    entries = [e for e in ledger.values() if (e.get("session") or {}).get("room") == room["id"]]
    name = f"{conference.get('title') or ''} · {room['name']}"
    return _calendar(conference, name, entries, {room["id"]: room["name"]})


def render_sessions(
    conference: dict[str, Any],
    rooms: dict[str, str],
    ledger: dict[str, dict[str, Any]],
    ids: list[str],
    name: str,
) -> str:
    """The calendar of some sessions (a phone's favourites): each one's event exactly as its
    room's calendar has it, same UID and SEQUENCE, so a calendar app that already holds it
    (from this or from the room's calendar) updates it instead of adding a second one. `rooms`
    maps room ids to names; a session that left the program stays, cancelled."""
    entries = [ledger[i] for i in dict.fromkeys(ids) if i in ledger]
    return _calendar(conference, f"{conference.get('title') or ''} · {name}", entries, rooms)


def _calendar(
    conference: dict[str, Any],
    name: str,
    entries: list[dict[str, Any]],
    rooms: dict[str, str],
) -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_text(name)}",
    ]
    for entry in sorted(entries, key=lambda e: (e["session"]["start"], e["session"]["id"])):
        s = entry["session"]
        room = rooms.get(str(s.get("room")), str(s.get("room") or ""))
        description = "\n".join(
            part
            for part in (", ".join(s.get("speakers") or []), s.get("subtitle"), s.get("abstract"))
            if part
        )
        event = [
            "BEGIN:VEVENT",
            f"UID:{_text(s['id'])}@{_text(str(conference.get('id') or 'feed'))}",
            f"DTSTAMP:{_stamp(int(entry.get('modified', 0)))}",
            f"LAST-MODIFIED:{_stamp(int(entry.get('modified', 0)))}",
            f"DTSTART:{_when(s['start'])}",
            f"DTEND:{_when(s['end'])}",
            f"SUMMARY:{_text(s['title'])}",
            f"LOCATION:{_text(room)}",
            f"STATUS:{'CANCELLED' if entry.get('cancelled') else 'CONFIRMED'}",
            f"SEQUENCE:{int(entry.get('sequence', 0))}",
        ]
        if description:
            event.append(f"DESCRIPTION:{_text(description)}")
        if s.get("track"):
            event.append(f"CATEGORIES:{_text(s['track'])}")
        if s.get("language"):
            event.append(f"X-LANGUAGE:{_text(s['language'])}")
        lines += [*event, "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "".join(part + "\r\n" for line in lines for part in _fold(line))
