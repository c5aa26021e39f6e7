"""The domain's values and their validation: what a room status and an announcement may be.

Validators take loose input (CLI strings, JSON from a client or from Redis) and return the clean
dict that travels in an event's `data`, or raise `InvalidMessage` saying what is wrong.
"""

from __future__ import annotations

import re
import secrets
from enum import StrEnum
from typing import Any

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
) -> dict[str, Any]:
    """A room status change. Any status may follow any other: operators correct mistakes."""
    clean = _choice(Status, status, "status")
    if isinstance(delay, bool) or not isinstance(delay, int):
        raise InvalidMessage(
            f"delay must be a whole number of minutes, not {keys.brief_repr(delay)}", field="delay"
        )
    if not 0 <= delay <= MAX_DELAY_MINUTES:
        raise InvalidMessage(
            f"delay must be between 0 and {MAX_DELAY_MINUTES} minutes,"
            f" not {keys.brief_repr(delay)}",
            field="delay",
        )
    if session is not None and (
        not isinstance(session, str) or not session.strip() or len(session) > MAX_SESSION_ID
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
    return {"status": clean, "delay": delay, "session": session, "moved_to": moved_to}


def text(value: object, what: str = "text") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidMessage(f"{what} must be non-empty", field="text")
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
) -> dict[str, Any]:
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
