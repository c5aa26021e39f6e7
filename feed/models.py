"""The domain's values and their validation: what a room status and an announcement may be.

Validators take loose input (CLI strings, JSON from a client or from Redis) and return the clean
dict that travels in an event's `data`, or raise `InvalidMessage` saying what is wrong.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict

import orjson

from feed import keys
from feed.errors import InvalidMessage

MAX_DELAY_MINUTES = 24 * 60
MAX_TEXT = 2000
MAX_SESSION_ID = 200
MAX_ANNOUNCEMENT_ID = 64
MAX_ROOMS_PER_ANNOUNCEMENT = 500


class Status(StrEnum):
    UPCOMING = "upcoming"
    STARTING = "starting"
    LIVE = "live"
    DELAYED = "delayed"
    FULL = "full"
    ENDED = "ended"
    CANCELLED = "cancelled"
    MOVED = "moved"


class Priority(StrEnum):
    INFO = "info"
    IMPORTANT = "important"
    EMERGENCY = "emergency"


class Kind(StrEnum):
    """What an event does to its channel's state."""

    STATUS = "status"
    ANNOUNCE = "announce"
    RETRACT = "retract"
    PROGRAM = "program"  # a room's name and sessions, from an imported program
    SCHEDULE = "schedule"  # on `venue`: a new program version and what changed


MAX_EVENT_BYTES = 60 * 1024  # an event's data, encoded; clients' websocket limits start at 64 KiB
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")


MAX_PROGRAM_EVENT_BYTES = 256 * 1024  # a room's sessions: about a thousand of them


class StatusData(TypedDict):
    """A `status` event's data, as `status_data` makes it (and as a room's state holds it)."""

    status: str
    delay: int
    session: str | None
    moved_to: str | None


class Announcement(TypedDict):
    """An `announce` event's data, as `announcement` makes it; channels keep a list of them."""

    id: str
    text: str | dict[str, str]
    priority: str
    rooms: list[str]
    ts: int
    expires_at: int | None


Session = dict[str, Any]  # as the program event gives it: its fields pass unchanged (JSON)
Change = dict[str, Any]  # as the schedule event gives it (program.Change, as JSON)


class Schedule(TypedDict):
    """The venue's `schedule`: the program version of the last `schedule` event."""

    etag: str
    conference: dict[str, Any] | None


class State(TypedDict, total=False):
    """A channel's state: the fields the events applied to it have set (docs/protocol.md, State).

    One type for a room's and the venue's, every field optional: the reducer applies each kind
    to whatever state it is given (a `status` event that reached `venue` would add its fields
    there), and a state read back from Redis is taken as it was stored (`feed.bus` checks only
    that it is an object), so readers still check each value they use."""

    announcements: list[Announcement]  # every channel
    # a room's: its status (`status` events) ...
    status: str | None
    delay: int
    session: str | None
    moved_to: str | None
    # ... and what the program says of it (`program` events)
    name: str | None
    names: dict[str, str]
    sessions: list[Session]
    # the venue's (`schedule` events)
    schedule: Schedule | None
    changes: list[Change]


def event(kind: object, data: object) -> None:
    """Check what any event must be: a short lowercase kind, and JSON data of bounded size."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise InvalidMessage(
            f"invalid event kind {keys.brief_repr(kind)}: 1-32 lowercase letters, digits or '_'"
        )
    try:
        size = len(orjson.dumps(data))
    except TypeError as exc:
        raise InvalidMessage(f"event data is not JSON: {exc}") from None
    limit = MAX_PROGRAM_EVENT_BYTES if kind == Kind.PROGRAM else MAX_EVENT_BYTES
    if size > limit:
        raise InvalidMessage(f"event data is {size} bytes; the limit is {limit}")


# ---- what the browser's reducer (web/static/feed-client.js) checks exactly as we do --------------

# JSON has one kind of number: a browser cannot tell 5.0 from 5, and holds whole numbers exactly
# only up to 2**53 - 1. A whole number is therefore any JSON number without a fraction in that
# range, never a bool.
MAX_SAFE_INTEGER = 2**53 - 1


def integer(value: object) -> int | None:
    """`value` as a whole number, or None when it is not one (see above)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else None
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    return None


# Characters that show nothing on a screen: controls, white space (Unicode White_Space), format
# characters (Cf), the other default-ignorable code points (variation selectors, Hangul fillers,
# tags) and the blank braille pattern. Frozen here, from Unicode 15.1, rather than read from
# each runtime's Unicode tables, so that Python and every browser draw the line in the same place;
# feed-client.js holds the same table (INVISIBLE) and tests/feed/test_vectors.py and
# tests/web/test_reducer_pages.py check both against their runtimes' Unicode data.
INVISIBLE: tuple[tuple[int, int], ...] = (
    (0x0000, 0x0020), (0x007F, 0x00A0), (0x00AD, 0x00AD), (0x034F, 0x034F), (0x0600, 0x0605),
    (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2),
    (0x115F, 0x1160), (0x1680, 0x1680), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x2000, 0x200F),
    (0x2028, 0x202F), (0x205F, 0x206F), (0x2800, 0x2800), (0x3000, 0x3000), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFFB), (0x110BD, 0x110BD),
    (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)  # fmt: skip
_VISIBLE = re.compile("[^" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in INVISIBLE) + "]")


def visible(value: str) -> bool:
    """Whether `value` has at least one character a reader can see."""
    return _VISIBLE.search(value) is not None


def _choice(enum: type[StrEnum], value: object, what: str) -> str:
    if isinstance(value, str) and value in enum._value2member_map_:
        return str(enum(value).value)  # a plain str, whether given a str or an enum member
    valid = ", ".join(m.value for m in enum)
    raise InvalidMessage(f"unknown {what} {keys.brief_repr(value)}: use one of {valid}", field=what)


def status_data(
    status: object,
    *,
    delay: object = 0,
    session: object = None,
    moved_to: object = None,
) -> StatusData:
    """A room status change. Any status may follow any other: operators correct mistakes."""
    clean = _choice(Status, status, "status")
    minutes = integer(delay)
    if minutes is None:
        raise InvalidMessage(
            f"delay must be a whole number of minutes, not {keys.brief_repr(delay)}", field="delay"
        )
    if not 0 <= minutes <= MAX_DELAY_MINUTES:
        raise InvalidMessage(
            f"delay must be between 0 and {MAX_DELAY_MINUTES} minutes,"
            f" not {keys.brief_repr(delay)}",
            field="delay",
        )
    if session is not None and (
        not isinstance(session, str) or not visible(session) or len(session) > MAX_SESSION_ID
    ):
        raise InvalidMessage(
            f"session must be a non-empty id of at most {MAX_SESSION_ID} characters",
            field="session",
        )
    if moved_to is not None:
        if clean != Status.MOVED:
            raise InvalidMessage(
                "moved_to is only meaningful with the status 'moved'", field="moved_to"
            )
        if not isinstance(moved_to, str):
            raise InvalidMessage(
                f"moved_to must be a room id, not {keys.brief_repr(moved_to)}", field="moved_to"
            )
        keys.room_id(moved_to)
    return {"status": clean, "delay": minutes, "session": session, "moved_to": moved_to}


def text(value: object, what: str = "text") -> str:
    """A text for the screens: at least one visible character (spaces, zero-width and format
    characters alone would show a blank announcement), bounded, no control characters."""
    if not isinstance(value, str) or not visible(value):
        raise InvalidMessage(
            f"{what} must be non-empty: it needs a visible character, not only spaces or"
            " invisible ones",
            field="text",
        )
    if len(value) > MAX_TEXT:
        raise InvalidMessage(
            f"{what} is {len(value)} characters; the limit is {MAX_TEXT}", field="text"
        )
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise InvalidMessage(f"{what} contains control characters", field="text")
    return value


_LANG = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?")
MAX_LANGUAGES = 8
FALLBACK = ("en", "fr", "ar")  # after the reader's own language, in this order, then any


def texts(value: object) -> str | dict[str, str]:
    """An announcement's text: one string, or one per language ({"fr": ..., "ar": ...})."""
    if isinstance(value, dict):
        if not value:
            raise InvalidMessage("text must name at least one language", field="text")
        if len(value) > MAX_LANGUAGES:
            raise InvalidMessage(f"text may have at most {MAX_LANGUAGES} languages", field="text")
        clean = {}
        for lang, one in value.items():
            if not isinstance(lang, str) or not _LANG.fullmatch(lang):
                raise InvalidMessage(
                    f"{keys.brief_repr(lang)} is not a language code like fr, ar or en",
                    field="text",
                )
            clean[lang] = text(one, f"text[{lang!r}]")
        return clean
    return text(value)


def in_language(value: str | dict[str, str], lang: str) -> str:
    """The text for a reader of `lang`, with the fallback order when it is missing."""
    if isinstance(value, str):
        return value
    for choice in (lang, lang.split("-", maxsplit=1)[0], *FALLBACK):
        if choice in value:
            return value[choice]
    return next(iter(value.values()))


def announcement_id_of(value: object) -> str:
    """Validate an announcement id: 1-64 printable ASCII characters."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_ANNOUNCEMENT_ID
        or not value.isascii()
        or not value.isprintable()
    ):
        raise InvalidMessage(
            f"announcement id must be 1-{MAX_ANNOUNCEMENT_ID} printable ASCII characters",
            field="id",
        )
    return value


def new_announcement_id() -> str:
    return secrets.token_hex(8)


def announcement(
    text_value: object,
    *,
    rooms: list[str] | tuple[str, ...] = (),
    priority: object = Priority.INFO,
    ts: int,
    expires_at: int | None = None,
    announcement_id: str | None = None,
) -> Announcement:
    """An announcement as it is stored and sent. `ts` and `expires_at` are Unix milliseconds."""
    clean_rooms = sorted({keys.room_id(r) for r in rooms})
    if len(clean_rooms) > MAX_ROOMS_PER_ANNOUNCEMENT:
        raise InvalidMessage(
            f"an announcement may name at most {MAX_ROOMS_PER_ANNOUNCEMENT} rooms", field="rooms"
        )
    if expires_at is not None and priority == Priority.EMERGENCY:
        raise InvalidMessage(
            "an emergency stays on every screen until it is retracted: give it no expiry",
            field="expires_at",
        )
    if expires_at is not None and expires_at <= ts:
        raise InvalidMessage("an announcement must expire after it is posted", field="expires_at")
    aid = announcement_id_of(new_announcement_id() if announcement_id is None else announcement_id)
    return {
        "id": aid,
        "text": texts(text_value),
        "priority": _choice(Priority, priority, "priority"),
        "rooms": clean_rooms,
        "ts": ts,
        "expires_at": expires_at,
    }


def announcement_channels(rooms: list[str]) -> list[str]:
    """Where an announcement goes: each named room's channel, or `venue` when none is named."""
    return [keys.room_channel(r) for r in rooms] if rooms else [keys.VENUE]


# ---- an event's data, as it arrives from a publisher, from Redis or over the wire ---------------
#
# One validator per known kind. The publisher refuses data that fails it (InvalidMessage); the
# reducer, which may still meet such data written by an older or foreign publisher, leaves the
# state as it was. The browser's reducer (web/static/feed-client.js) applies the same rules, and
# tests/reducer_vectors.json holds the cases both must agree on.


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidMessage(f"{what} must be a JSON object, not {keys.brief_repr(value)}")
    return value


def status_event(data: object) -> StatusData:
    """A `status` event's data: the whole status; missing fields are their defaults."""
    fields = _object(data, "a status")
    return status_data(
        fields.get("status"),
        delay=fields.get("delay", 0),
        session=fields.get("session"),
        moved_to=fields.get("moved_to"),
    )


def announcement_event(data: object) -> Announcement:
    """An `announce` event's data: an announcement as `announcement` made it, id and ts included."""
    fields = _object(data, "an announcement")
    ts = integer(fields.get("ts"))
    if ts is None:
        raise InvalidMessage("an announcement's ts must be a whole number (Unix ms)", field="ts")
    expires_raw = fields.get("expires_at")
    expires_at = None if expires_raw is None else integer(expires_raw)
    if expires_raw is not None and expires_at is None:
        raise InvalidMessage(
            "an announcement's expires_at must be a whole number (Unix ms) or null",
            field="expires_at",
        )
    aid = fields.get("id")
    if aid is None:
        raise InvalidMessage("an announcement needs an id", field="id")
    rooms = fields.get("rooms", [])
    if not isinstance(rooms, list):
        raise InvalidMessage("an announcement's rooms must be a list of room ids", field="rooms")
    return announcement(
        fields.get("text"),
        rooms=rooms,
        priority=fields.get("priority", Priority.INFO),
        ts=ts,
        expires_at=expires_at,
        announcement_id=announcement_id_of(aid),
    )


def retraction(data: object) -> dict[str, Any]:
    """A `retract` event's data: the announcement's id, and why (any text; unknown means
    'retracted')."""
    fields = _object(data, "a retraction")
    announcement_id_of(fields.get("id"))
    reason = fields.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidMessage("a retraction's reason must be a string", field="reason")
    return fields


_INSTANT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-]([0-9]{2}):([0-9]{2}))"
)


def instant(value: object, what: str) -> str:
    """A session's start or end: ISO 8601 with seconds optional, at most microseconds, and a UTC
    offset in hours and minutes (or Z). Python's `fromisoformat` reads more than that, but a
    browser's `Date.parse` reads only this much the same way everywhere."""
    match = _INSTANT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidMessage(
            f"{what} must be an ISO 8601 time with a UTC offset, such as"
            f" 2019-04-17T09:15:00+01:00, not {keys.brief_repr(value)}",
            field=what,
        )
    year, month, day, hour, minute, second, off_hours, off_minutes = (
        int(part or 0) for part in match.groups()
    )
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise InvalidMessage(f"{what}: {value!r} is not a date and time", field=what) from None
    if off_hours > 23 or off_minutes > 59:
        raise InvalidMessage(f"{what}: {value!r} has no valid UTC offset", field=what)
    return match.string


def _changes(value: object) -> list[Any]:
    if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
        raise InvalidMessage("changes must be a list of objects", field="changes")
    return value


def program_event(data: object) -> dict[str, Any]:
    """A `program` event's data: the room (its name a string or null) and its sessions, each
    with an id and a start and an end `instant`. Other fields pass unchanged."""
    fields = _object(data, "a program")
    room = _object(fields.get("room"), "a program's room")
    name = room.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidMessage("a room's name must be a string or null", field="room")
    sessions = fields.get("sessions")
    if not isinstance(sessions, list):
        raise InvalidMessage("a program's sessions must be a list", field="sessions")
    for session in sessions:
        if not isinstance(session, dict):
            raise InvalidMessage("each session must be an object", field="sessions")
        sid = session.get("id")
        if not isinstance(sid, str) or not sid:
            raise InvalidMessage("each session needs an id", field="sessions")
        instant(session.get("start"), "start")
        instant(session.get("end"), "end")
    _changes(fields.get("changes", []))
    return fields


def schedule_event(data: object) -> dict[str, Any]:
    """A `schedule` event's data: the program's etag, its conference (an object or null) and
    what changed (a list of objects, maybe empty)."""
    fields = _object(data, "a schedule")
    etag = fields.get("etag")
    if not isinstance(etag, str) or not etag:
        raise InvalidMessage("a schedule needs an etag", field="etag")
    conference = fields.get("conference")
    if conference is not None and not isinstance(conference, dict):
        raise InvalidMessage("a schedule's conference must be an object", field="conference")
    _changes(fields.get("changes", []))
    total = fields.get("changes_total")
    if total is not None and (integer(total) is None or total < 0):
        raise InvalidMessage("changes_total must be a whole number >= 0", field="changes_total")
    return fields


_VALIDATORS: dict[str, Callable[[object], Any]] = {
    Kind.STATUS: status_event,
    Kind.ANNOUNCE: announcement_event,
    Kind.RETRACT: retraction,
    Kind.PROGRAM: program_event,
    Kind.SCHEDULE: schedule_event,
}
ROOM_ONLY = frozenset({Kind.STATUS, Kind.PROGRAM})
VENUE_ONLY = frozenset({Kind.SCHEDULE})


def event_data(kind: str, data: object) -> Any:
    """The data of an event of `kind` as the state takes it, or InvalidMessage saying which rule
    it breaks. Data of kinds this version does not know passes as it is: they are for newer
    readers, and change no state here."""
    validate = _VALIDATORS.get(kind)
    return data if validate is None else validate(data)


def publishable(channel: str, kind: object, data: object) -> Any:
    """What a publisher may send: any kind within the size limits, a known kind only with valid
    data and on the channels it is for. Returns the data to publish."""
    event(kind, data)
    assert isinstance(kind, str)  # event() checked it
    if kind in ROOM_ONLY and not channel.startswith(keys.ROOM_PREFIX):
        raise InvalidMessage(f"a {kind} event goes on a room's channel, not on {channel}")
    if kind in VENUE_ONLY and channel != keys.VENUE:
        raise InvalidMessage(f"a {kind} event goes on {keys.VENUE}, not on {channel}")
    return event_data(kind, data)
