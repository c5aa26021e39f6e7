"""The conference program: its rooms and sessions, normalised from whatever tool exported it.

Pure values, no I/O. Times are aware datetimes in UTC inside; `Program.to_json` renders each one in
the venue's IANA zone at that instant, never with one fixed offset, because offsets change (summer
time, and Africa/Casablanca drops an hour during Ramadan).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from feed import keys, zones
from feed.errors import InvalidMessage

MAX_SLUG = 48  # leaves room for a "-NN" suffix within keys.MAX_ROOM_ID

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Conference:
    id: str  # a slug of the acronym, else of the title
    title: str
    timezone: str | None  # the IANA zone the program was read in
    start: date | None
    end: date | None


@dataclass(frozen=True, slots=True)
class Room:
    id: str  # what channels, URLs and tokens use: see feed.keys.room_id
    name: str  # in the source's main language
    names: dict[str, str] = field(default_factory=dict)  # per language, when the source has several


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    title: str
    room: str  # the room's id
    start: datetime  # aware, in UTC
    end: datetime
    speakers: tuple[str, ...] = ()
    track: str | None = None
    language: str | None = None
    type: str | None = None
    subtitle: str | None = None
    # As the source wrote it (plain text or Markdown, never parsed as HTML); pages show it as text.
    abstract: str | None = None
    # Per language, when the source has several; the plain fields above are in its main language.
    titles: dict[str, str] = field(default_factory=dict)
    abstracts: dict[str, str] = field(default_factory=dict)
    tracks: dict[str, str] = field(default_factory=dict)
    source_id: str = ""  # the exporting tool's own id, for people tracing a session back to it


def _order(session: Session) -> tuple[datetime, str, str]:
    return session.start, session.room, session.id


@dataclass(frozen=True, slots=True)
class Program:
    """A conference, its rooms in the file's order and its sessions by (start, room, id)."""

    conference: Conference
    rooms: tuple[Room, ...]
    sessions: tuple[Session, ...]

    def __post_init__(self) -> None:
        # Sorting here, not in each importer, makes equal programs compare equal and diffs stable.
        object.__setattr__(self, "sessions", tuple(sorted(self.sessions, key=_order)))

    def to_json(self, zone: str, *, with_source: bool = False) -> dict[str, Any]:
        """The API shape, times in `zone` with that zone's offset at each instant.

        `conference.timezone` stays the program's own, so `from_json` gives back this program
        whatever `zone` rendered it. `with_source` adds each session's `source_id`, which the API
        does not show but a store may want to keep.
        """
        tz = zone_info(zone)
        c = self.conference
        sessions = []
        for s in self.sessions:
            item: dict[str, Any] = {
                "id": s.id,
                "title": s.title,
                "room": s.room,
                "start": s.start.astimezone(tz).isoformat(),
                "end": s.end.astimezone(tz).isoformat(),
                "speakers": list(s.speakers),
                "track": s.track,
                "language": s.language,
                "type": s.type,
                "subtitle": s.subtitle,
                "abstract": s.abstract,
                "titles": dict(s.titles),
                "abstracts": dict(s.abstracts),
                "tracks": dict(s.tracks),
            }
            if with_source:
                item["source_id"] = s.source_id
            sessions.append(item)
        return {
            "conference": {
                "id": c.id,
                "title": c.title,
                "timezone": c.timezone,
                "start": c.start.isoformat() if c.start else None,
                "end": c.end.isoformat() if c.end else None,
            },
            "rooms": [{"id": r.id, "name": r.name, "names": dict(r.names)} for r in self.rooms],
            "sessions": sessions,
        }

    @classmethod
    def from_json(cls, data: object) -> Program:
        """The inverse of `to_json`; an invalid field raises InvalidMessage naming it."""
        root = _typed(data, "program", dict)
        c = _typed(root.get("conference"), "conference", dict)
        timezone = _optional(c, "timezone", "conference", str)
        if timezone is not None:
            zone_info(timezone)
        conference = Conference(
            id=_text(c, "id", "conference"),
            title=_typed(c.get("title"), "conference.title", str),
            timezone=timezone,
            start=_date(c, "start", "conference"),
            end=_date(c, "end", "conference"),
        )
        rooms: list[Room] = []
        for i, item in enumerate(_typed(root.get("rooms"), "rooms", list)):
            r = _typed(item, f"rooms[{i}]", dict)
            rid = _text(r, "id", f"rooms[{i}]")
            try:
                keys.room_id(rid)
            except InvalidMessage as exc:
                raise InvalidMessage(f"rooms[{i}].id: {exc.message}") from None
            if any(rid == known.id for known in rooms):
                raise InvalidMessage(f"rooms[{i}].id: duplicate room id {rid!r}")
            name = _typed(r.get("name"), f"rooms[{i}].name", str)
            rooms.append(Room(rid, name, _languages(r, "names", f"rooms[{i}]")))
        room_ids = {r.id for r in rooms}
        sessions: list[Session] = []
        seen: set[str] = set()
        for i, item in enumerate(_typed(root.get("sessions"), "sessions", list)):
            where = f"sessions[{i}]"
            s = _typed(item, where, dict)
            sid = _text(s, "id", where)
            if sid in seen:
                raise InvalidMessage(f"{where}.id: duplicate session id {sid!r}")
            seen.add(sid)
            room = _text(s, "room", where)
            if room not in room_ids:
                raise InvalidMessage(f"{where}.room: {room!r} is not one of the rooms")
            start, end = _instant(s, "start", where), _instant(s, "end", where)
            if start > end:  # a zero-length entry (a deadline, a marker) is kept as it is
                raise InvalidMessage(f"{where}.end: {s['end']!r} is before start")
            speakers = _typed(s.get("speakers"), f"{where}.speakers", list)
            sessions.append(
                Session(
                    id=sid,
                    title=_typed(s.get("title"), f"{where}.title", str),
                    room=room,
                    start=start,
                    end=end,
                    speakers=tuple(
                        _typed(p, f"{where}.speakers[{j}]", str) for j, p in enumerate(speakers)
                    ),
                    track=_optional(s, "track", where, str),
                    language=_optional(s, "language", where, str),
                    type=_optional(s, "type", where, str),
                    subtitle=_optional(s, "subtitle", where, str),
                    abstract=_optional(s, "abstract", where, str),
                    titles=_languages(s, "titles", where),
                    abstracts=_languages(s, "abstracts", where),
                    tracks=_languages(s, "tracks", where),
                    source_id=_typed(s.get("source_id", ""), f"{where}.source_id", str),
                )
            )
        return cls(conference, tuple(rooms), tuple(sessions))


def zone_info(name: str) -> ZoneInfo:
    """The IANA zone called `name`, from the tz data the server trusts (feed.zones: the newer of
    the system's and the wheel's); InvalidMessage when there is none."""
    return zones.trusted().zone(name)


def _typed(value: object, where: str, kind: type[_T]) -> _T:
    if not isinstance(value, kind):
        raise InvalidMessage(f"{where}: expected {kind.__name__}, got {value!r:.60}")
    return value


def _languages(obj: Mapping[str, object], key: str, where: str) -> dict[str, str]:
    """A {language: text} map; missing (a program stored before it existed) is none."""
    found = _typed(obj.get(key, {}), f"{where}.{key}", dict)
    return {str(k): _typed(v, f"{where}.{key}.{k}", str) for k, v in found.items()}


def _optional(obj: Mapping[str, object], key: str, where: str, kind: type[_T]) -> _T | None:
    value = obj.get(key)
    return None if value is None else _typed(value, f"{where}.{key}", kind)


def _text(obj: Mapping[str, object], key: str, where: str) -> str:
    value = _typed(obj.get(key), f"{where}.{key}", str)
    if not value:
        raise InvalidMessage(f"{where}.{key}: must not be empty")
    return value


def _date(obj: Mapping[str, object], key: str, where: str) -> date | None:
    value = _optional(obj, key, where, str)
    try:
        return None if value is None else date.fromisoformat(value)
    except ValueError:
        raise InvalidMessage(f"{where}.{key}: {value!r} is not an ISO date") from None


def _instant(obj: Mapping[str, object], key: str, where: str) -> datetime:
    value = _typed(obj.get(key), f"{where}.{key}", str)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidMessage(f"{where}.{key}: {value!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise InvalidMessage(f"{where}.{key}: {value!r} has no UTC offset")
    return when.astimezone(UTC)


# ---- room ids --------------------------------------------------------------------------------


def slugify(name: str, prefix: str = "room") -> str:
    """A lowercase ASCII slug of `name`, at most MAX_SLUG characters.

    A name with no Latin letters or digits (Arabic, say) still needs an id: it gets `prefix` and a
    short hash of the name, stable across imports.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:MAX_SLUG].rstrip("-")
    return slug or f"{prefix}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def assign_room_ids(names: list[str], known: dict[str, str]) -> dict[str, str]:
    """Room name -> id: the stored id for a known name, else a slug unique among all ids in use.

    Ids in `known` stay reserved even for names absent from this import, so a room that comes back
    in a later version gets its old id and never another room's.
    """
    for name, rid in known.items():
        try:
            keys.room_id(rid)
        except InvalidMessage as exc:
            raise InvalidMessage(f"stored room id for {name!r}: {exc.message}") from None
    used = set(known.values())
    ids: dict[str, str] = {}
    for name in names:
        if name in ids:
            continue
        if name in known:
            ids[name] = known[name]
            continue
        base = candidate = slugify(name)
        n = 2
        while candidate in used:
            candidate = f"{base}-{n}"
            n += 1
        used.add(candidate)
        ids[name] = candidate
    return ids


# ---- re-imports ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # new, cancelled, moved, retimed, retitled
    session: str
    room: str | None  # the room whose screens should hear of it: the new one, or the old if gone
    old_room: str | None  # set for `moved`
    title: str
    detail: dict[str, str] = field(default_factory=dict)


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def zone_changed(old: Program | None, new: Program) -> tuple[str, str] | None:
    """The program's zone before and after, when a re-import changed it."""
    if old is None or old.conference.timezone == new.conference.timezone:
        return None
    return old.conference.timezone or "UTC", new.conference.timezone or "UTC"


def _wall_clock(old: Program, new: Program) -> Callable[[Session], object]:
    """How to compare two versions of a session's times: as instants, or, when the zone changed,
    as the local times each program prints (its own zone for each)."""
    changed = zone_changed(old, new)
    if changed is None:
        return lambda s: (s.start, s.end)
    old_zone, new_zone = zone_info(changed[0]), zone_info(changed[1])
    old_ones = {id(s) for s in old.sessions}  # the objects themselves: ids repeat across versions

    def local(s: Session) -> object:
        tz = old_zone if id(s) in old_ones else new_zone
        return s.start.astimezone(tz).replace(tzinfo=None), s.end.astimezone(tz).replace(
            tzinfo=None
        )

    return local


def diff(old: Program | None, new: Program) -> list[Change]:
    """What a re-import changed, session by session.

    Order: the new program's sessions in program order (a session may give `moved`, `retimed` and
    `retitled`, in that order), then the cancelled ones in the old program's order. A first import
    (`old` None) is not news: no changes.

    When only the program's zone changed (a file read again with the venue's zone given), the
    instants move but the printed times do not: a session is `retimed` only when its times differ
    on the wall clock too, so attendees are not told that every talk changed.
    """
    if old is None:
        return []
    printed = _wall_clock(old, new)
    before = {s.id: s for s in old.sessions}
    after = {s.id for s in new.sessions}
    changes: list[Change] = []
    for s in new.sessions:
        was = before.get(s.id)
        if was is None:
            changes.append(Change("new", s.id, s.room, None, s.title))
            continue
        if was.room != s.room:
            changes.append(Change("moved", s.id, s.room, was.room, s.title))
        if (was.start, was.end) != (s.start, s.end) and printed(was) != printed(s):
            detail = {
                "old_start": _utc(was.start),
                "old_end": _utc(was.end),
                "new_start": _utc(s.start),
                "new_end": _utc(s.end),
            }
            changes.append(Change("retimed", s.id, s.room, None, s.title, detail))
        if was.title != s.title:
            detail = {"old": was.title, "new": s.title}
            changes.append(Change("retitled", s.id, s.room, None, s.title, detail))
    changes += [
        Change("cancelled", s.id, s.room, None, s.title) for s in old.sessions if s.id not in after
    ]
    return changes


# ---- room screens ----------------------------------------------------------------------------


def now_and_next(
    sessions: list[dict[str, Any]], now: datetime, delay_min: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The current and the next session of one room, with the operator's delay applied.

    `sessions` are one room's sessions as `Program.to_json` gives them; `now` must be aware. A room
    running `delay_min` late runs every session that has not yet ended, counting the delay, that
    much later: a talk scheduled to end five minutes ago is still on with a ten-minute delay.
    Sessions that ended even so play no part, so shifting every session gives the same answer.
    `now` is the session whose shifted [start, end) holds `now`; `next` the first other one whose
    shifted start is at or after `now`. Both are copies with shifted `start`/`end` (same offsets
    as given) and a `delay` field.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    shift = timedelta(minutes=delay_min)
    shifted: list[tuple[datetime, datetime, dict[str, Any]]] = []
    for s in sessions:
        start = datetime.fromisoformat(s["start"]) + shift
        end = datetime.fromisoformat(s["end"]) + shift
        if end > now:
            copy = {**s, "start": start.isoformat(), "end": end.isoformat(), "delay": delay_min}
            shifted.append((start, end, copy))
    shifted.sort(key=lambda item: (item[0], item[1]))
    current = next((s for start, end, s in shifted if start <= now < end), None)
    upcoming = next((s for start, _, s in shifted if start >= now and s is not current), None)
    return current, upcoming


ROOM_SESSION_FIELDS = (
    "id",
    "title",
    "titles",
    "tracks",
    "start",
    "end",
    "speakers",
    "track",
    "language",
    "type",
)


def compact(session: dict[str, Any]) -> dict[str, Any]:
    """A session as a room's state carries it: what a door screen shows, no abstract."""
    return {k: session.get(k) for k in ROOM_SESSION_FIELDS}
