"""Schedule importers: the programs conference tools export, read into one `Program`.

Three formats, told apart by their content: frab XML (also what pretalx and Pentabarf emit, FOSDEM
included), the C3VOC `schedule.json` that frab and pretalx export, and pretalx's widget JSON. Pure
functions over bytes.

Real exports are dirty (merged files, breaks without ids, rooms the room list forgot), and the
apps people use on them read them as they are. So an entry with one sensible reading is repaired,
one that cannot be used (no start, no room) is skipped, and both are reported with the JSON path
or the XML line of the entry: `read` returns the program with that `Report`. With `strict`, the
first repair or skip refuses the file instead. A problem with the file as a whole (not a program,
no zone, no usable session) is an `InvalidMessage` that starts with the source name.

Texts are kept as the source wrote them: frab and pretalx store plain text or Markdown, and HTML
parsing on the way in loses content (`<https://...>`, `&param=1` in a URL, `Use <video>`) and can
be made to take seconds. Only control characters are removed, outer whitespace trimmed, and each
text's length capped.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import PurePath
from typing import Any
from xml.parsers import expat
from zoneinfo import ZoneInfo

from feed.errors import InvalidMessage
from feed.program import Conference, Program, Room, Session, assign_room_ids, slugify, zone_info

DAY_CHANGE = time(6)  # when a file says nothing, a time before 06:00 is the night after the day

FIRST_YEAR, LAST_YEAR = 1970, 2100
MAX_SESSION = timedelta(hours=48)
MAX_ROOMS = 1000
MAX_SESSIONS = 20_000
MAX_LINE = 500  # characters of a title, a name, a track: a screen line, with room to spare
MAX_TEXT = 20_000  # characters of an abstract or a description
REPORTED = 20  # repairs and skips kept by name in a report (all are counted)

NO_ZONE = (
    "the file names no time zone and none was given: give the venue's IANA zone with --zone"
    " (such as --zone Europe/Brussels), the `zone` query parameter of POST /api/schedule, or"
    " FEED_VENUE_ZONE"
)

# C0 controls but tab and newline, DEL, and C1: they break calendars (RFC 5545) and terminals.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Note:
    where: str  # the entry: its JSON path, or its XML line and path
    what: str  # what was wrong, and what was done

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass(slots=True)
class Report:
    """What an import repaired and skipped; the first REPORTED of each by name, all counted."""

    repaired: int = 0
    skipped: int = 0
    repairs: list[Note] = field(default_factory=list)
    skips: list[Note] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "repaired": self.repaired,
            "skipped": self.skipped,
            "repairs": [{"where": n.where, "what": n.what} for n in self.repairs],
            "skips": [{"where": n.where, "what": n.what} for n in self.skips],
        }


@dataclass(frozen=True, slots=True)
class Imported:
    program: Program
    report: Report


class _Skip(Exception):
    """This entry cannot be used: left out and reported (or the file refused, when strict)."""


class _LeftOut(Exception):
    """An entry with nothing to show, as exports routinely hold (an untitled break, a pretalx
    blocker without a room): left out without a word, strict or not."""


class _Reading:
    """One import's choices and notes."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.report = Report()

    def repair(self, where: str, problem: str, fix: str) -> None:
        if self.strict:
            raise InvalidMessage(f"{where}: {problem}")
        self.report.repaired += 1
        if len(self.report.repairs) < REPORTED:
            self.report.repairs.append(Note(where, f"{problem}: {fix}"))

    def skip(self, where: str, problem: str) -> None:
        if self.strict:
            raise InvalidMessage(problem if problem.startswith(where) else f"{where}: {problem}")
        self.report.skipped += 1
        if len(self.report.skips) < REPORTED:
            # "<where>.duration: ..." reads "duration: ..." after the entry's own path
            what = problem[len(where) :].lstrip(".:/ ") if problem.startswith(where) else problem
            self.report.skips.append(Note(where, f"{what}; left out"))


@dataclass(slots=True)
class _Entry:
    """A session as read, before room ids and duplicate ids are settled."""

    where: str
    session: Session  # `room` holds the room's name here
    written_start: str  # the start as the file writes it: part of a derived id
    guid: str | None
    event_id: str | None


def read(
    data: bytes,
    *,
    source: str,
    venue_zone: str | None = None,
    known_rooms: dict[str, str] | None = None,
    title: str | None = None,
    strict: bool = False,
) -> Imported:
    """Read a schedule export: the program, and what was repaired or skipped on the way.

    `title` names the conference when the format does not (pretalx's widget data); otherwise
    the file's name stands in for it.

    Times are served in `venue_zone`, else the zone the file names; neither is an error. Times
    without an offset are read in the file's zone, else the venue's; times with one keep it.
    Room ids come from `known_rooms` (name -> id, kept from earlier imports) when it has the
    name, else from the name, so they stay stable across re-imports.
    """
    reading = _Reading(strict)
    try:
        head = data.removeprefix(codecs.BOM_UTF8).lstrip()[:1]
        if not head:
            raise InvalidMessage("the file is empty")
        if head == b"<":
            conference, rooms, found = _from_xml(data, venue_zone, reading)
        elif head in (b"{", b"["):
            doc = _load_json(data)
            if isinstance(doc, dict) and "schedule" in doc:
                conference, rooms, found = _from_schedule_json(doc, venue_zone, reading)
            elif isinstance(doc, dict) and "talks" in doc:
                conference, rooms, found = _from_widget(doc, venue_zone, title or source, reading)
            else:
                raise InvalidMessage(
                    "unknown JSON: expected a schedule.json ({'schedule': ...})"
                    " or a pretalx widget export ({'talks': ...})"
                )
        else:
            raise InvalidMessage(
                "not a schedule: expected frab XML (<schedule>), schedule.json or pretalx JSON"
            )
        program = _program(conference, rooms, found, known_rooms or {}, reading)
        return Imported(program, reading.report)
    except InvalidMessage as exc:
        raise InvalidMessage(f"{source}: {exc.message}") from None
    except (ValueError, OverflowError, LookupError, UnicodeError) as exc:
        # What the checks above did not foresee (an odd encoding, a date the calendar cannot
        # hold) is still the file's fault, never the server's.
        raise InvalidMessage(f"{source}: cannot read it: {exc}") from None


# ---- what every format shares ----------------------------------------------------------------


class _Rooms:
    """The program's rooms by name, in order: the file's list, then the ones it forgot."""

    def __init__(self) -> None:
        self.names: dict[str, dict[str, str]] = {}  # name -> its names per language
        self._aliases: dict[str, str] = {}  # any language's name -> the name
        self.listed = False

    def define(self, name: str, names: dict[str, str] | None = None) -> None:
        if name in self.names:
            return
        self.names[name] = names or {}
        for alias in [name, *(names or {}).values()]:
            self._aliases.setdefault(alias, name)

    def find(self, name: str) -> str | None:
        return self._aliases.get(name)

    def place(self, name: str, where: str, reading: _Reading) -> str:
        """The room an entry listed under `name` is in; one the list lacks is added."""
        known = self.find(name)
        if known is not None:
            return known
        if self.listed:
            reading.repair(
                where, f"room {name!r} is not in the conference's room list", "added to it"
            )
        self.define(name)
        return name


def _program(
    conference: Conference,
    rooms: _Rooms,
    found: list[_Entry],
    known: dict[str, str],
    reading: _Reading,
) -> Program:
    usable: list[_Entry] = []
    for entry in found:
        s = entry.session
        if not (s.start.year >= FIRST_YEAR and s.end.year <= LAST_YEAR):
            reading.skip(entry.where, f"a date outside {FIRST_YEAR}-{LAST_YEAR}")
        elif s.end - s.start > MAX_SESSION:
            reading.skip(entry.where, f"a session longer than {MAX_SESSION}")
        else:
            usable.append(entry)
    if not usable:
        if not reading.report.skipped:
            raise InvalidMessage("no sessions found")
        raise InvalidMessage(
            f"none of its {reading.report.skipped} sessions can be used; the first:"
            f" {reading.report.skips[0]}"
        )
    # Every room of the file, used or not: an empty room is still a door with a screen.
    names = list(rooms.names)
    if len(names) > MAX_ROOMS or len(usable) > MAX_SESSIONS:
        raise InvalidMessage(
            f"{len(names)} rooms and {len(usable)} sessions; the limits are {MAX_ROOMS}"
            f" and {MAX_SESSIONS}"
        )
    ids = assign_room_ids(names, known)
    sessions = [
        replace(e.session, id=sid, room=ids[e.session.room])
        for e, sid in zip(usable, _session_ids(conference, usable, reading), strict=True)
    ]
    return Program(
        conference,
        tuple(Room(ids[n], n, rooms.names[n]) for n in names),
        tuple(sessions),
    )


def _session_ids(conference: Conference, entries: list[_Entry], reading: _Reading) -> list[str]:
    """Each entry's id: its guid, else `<conference>-<id>`, else a hash of its room, start and
    title; an id used twice gets `-2`, `-3`... on its later uses, never an id of the file."""
    wanted: list[str] = []
    for e in entries:
        if e.guid:
            wanted.append(e.guid)
        elif e.event_id:
            wanted.append(f"{conference.id}-{e.event_id}")
        else:
            text = "\x1f".join((e.session.room, e.written_start, e.session.title))
            derived = f"{conference.id}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
            reading.repair(e.where, "no guid and no id", f"given the id {derived}")
            wanted.append(derived)
    taken = set(wanted)
    first: dict[str, str] = {}
    ids: list[str] = []
    for e, sid in zip(entries, wanted, strict=True):
        if sid not in first:
            first[sid] = e.where
            ids.append(sid)
            continue
        n = 2
        while f"{sid}-{n}" in taken:
            n += 1
        unique = f"{sid}-{n}"
        taken.add(unique)
        reading.repair(
            e.where, f"duplicate session id {sid!r}, also used at {first[sid]}", f"given {unique}"
        )
        ids.append(unique)
    return ids


def _conference(
    acronym: str | None, title: str | None, start: date | None, end: date | None, zone: str
) -> Conference:
    name = acronym or title
    if not name:
        raise InvalidMessage("the conference has neither an acronym nor a title")
    return Conference(slugify(name, "conference"), title or name, zone, start, end)


def _zone(venue_zone: str | None, named: str | None, where: str) -> tuple[str, ZoneInfo]:
    """The zone the program is served in (the venue's, else the file's), and the one its local
    times are read in (the file's own when it names one, else the venue's). Neither: refused,
    because a guess (UTC) puts every session hours off at most venues."""
    try:
        if venue_zone:
            zone_info(venue_zone)
    except InvalidMessage as exc:
        raise InvalidMessage(f"venue zone: {exc.message}") from None
    read_in = named or venue_zone
    if not read_in:
        raise InvalidMessage(NO_ZONE)
    try:
        tz = zone_info(read_in)
    except InvalidMessage as exc:
        raise InvalidMessage(f"{where}: {exc.message}") from None
    return venue_zone or read_in, tz


# ---- values ----------------------------------------------------------------------------------


def _clean(value: str | None) -> str | None:
    """A text as the source wrote it, without control characters or outer whitespace."""
    if not value:
        return None
    return _CONTROL.sub("", value).strip() or None


def _capped(value: str | None, limit: int, where: str, reading: _Reading) -> str | None:
    if value is None or len(value) <= limit:
        return value
    reading.repair(where, f"{len(value)} characters", f"cut to the first {limit}")
    return value[:limit]


_CLOCK = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?")
_DURATION = re.compile(r"(\d{1,3}):([0-5]\d)(?::([0-5]\d))?")


def _clock(value: str | None, where: str) -> time:
    m = _CLOCK.fullmatch(value or "")
    if not m or int(m[1]) > 23:
        raise InvalidMessage(f"{where}: {value!r} is not a time of day (HH:MM)")
    return time(int(m[1]), int(m[2]), int(m[3] or 0))


def _duration(value: str | None, where: str) -> timedelta:
    m = _DURATION.fullmatch(value or "")
    if not m:
        raise InvalidMessage(f"{where}: {value!r} is not a duration (HH:MM)")
    return timedelta(hours=int(m[1]), minutes=int(m[2]), seconds=int(m[3] or 0))


def _date(value: str | None, where: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return _moment(value, where, None).date()  # some exports give a date-time here


def _moment(value: str | None, where: str, tz: ZoneInfo | None) -> datetime:
    """An ISO 8601 time; one without an offset is a wall-clock time in `tz`."""
    try:
        when = datetime.fromisoformat(value or "")
    except ValueError:
        raise InvalidMessage(f"{where}: {value!r} is not an ISO 8601 time") from None
    return when.replace(tzinfo=tz) if when.tzinfo is None and tz else when


def _span(
    where: str,
    sep: str,
    *,
    absolute: str | None,
    day: date | None,
    clock: str | None,
    duration: str | None,
    day_change: time,
    tz: ZoneInfo,
) -> tuple[datetime, datetime, str]:
    """Start and end in UTC, and the start as written: from an absolute `date` when there is
    one, else the day and a clock.

    Without an absolute date, a clock earlier than the day's start is past midnight: the next
    calendar date.
    """
    if absolute:
        start = _moment(absolute, f"{where}{sep}date", tz)
        written = absolute
    else:
        if day is None:
            raise _Skip(f"{where}: no date, neither in the event nor in its day")
        if not clock:
            raise _Skip(f"{where}: no start")
        at = _clock(clock, f"{where}{sep}start")
        start = datetime.combine(day + timedelta(days=at < day_change), at, tzinfo=tz)
        written = f"{day.isoformat()} {clock}"
    start = start.astimezone(UTC)
    return start, start + _duration(duration, f"{where}{sep}duration"), written


def _languages(texts: dict[str, str], prefer: str | None) -> tuple[str | None, dict[str, str]]:
    """The text to show of a {language: text} map (the entry's own language, else English, else
    the first given), and the map when it holds more than one."""
    shown = texts.get(prefer or "") or texts.get("en") or next(iter(texts.values()), None)
    return shown, texts if len(texts) > 1 else {}


# ---- frab and Pentabarf XML ------------------------------------------------------------------


def _xml(data: bytes) -> tuple[ET.Element, dict[int, int]]:
    """The document, and the line each element starts on (by the element's id)."""
    parser = expat.ParserCreate()
    builder = ET.TreeBuilder()
    lines: dict[int, int] = {}

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[id(builder.start(tag, attrs))] = parser.CurrentLineNumber

    def doctype(*_: object) -> None:
        # Entity declarations live in the DOCTYPE: refusing it stops billion-laughs expansion.
        raise InvalidMessage("DOCTYPE declarations are refused (they can define entities)")

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    try:
        parser.Parse(data, True)
        root = builder.close()
    except InvalidMessage:
        raise
    except expat.ExpatError as exc:
        raise InvalidMessage(
            f"line {exc.lineno}, column {exc.offset + 1}: invalid XML"
            f" ({expat.ErrorString(exc.code)})"
        ) from None
    except (LookupError, ValueError) as exc:  # expat asks Python for the declared codec
        raise InvalidMessage(f"unsupported XML encoding ({exc})") from None
    except AssertionError:  # TreeBuilder: no root element
        raise InvalidMessage("invalid XML (no element)") from None
    return root, lines


def _from_xml(
    data: bytes, venue_zone: str | None, reading: _Reading
) -> tuple[Conference, _Rooms, list[_Entry]]:
    root, lines = _xml(data)
    if root.tag != "schedule":
        raise InvalidMessage(f"the root element is <{root.tag}>, not a frab <schedule>")
    conf = root.find("conference")
    if conf is None:
        raise InvalidMessage("schedule/conference: missing")
    zone, tz = _zone(
        venue_zone,
        _clean(conf.findtext("time_zone_name")),
        "schedule/conference/time_zone_name",
    )
    conference = _conference(
        _clean(conf.findtext("acronym")),
        _clean(conf.findtext("title")),
        _date(_clean(conf.findtext("start")), "schedule/conference/start"),
        _date(_clean(conf.findtext("end")), "schedule/conference/end"),
        zone,
    )
    day_change = DAY_CHANGE
    if text := _clean(conf.findtext("day_change")):
        day_change = _clock(text, "schedule/conference/day_change")
    rooms = _Rooms()
    for listed in conf.iterfind("rooms/room"):
        if name := _clean(listed.get("name")):
            rooms.define(name)
    rooms.listed = bool(rooms.names)
    found: list[_Entry] = []
    for d, day in enumerate(root.iterfind("day"), 1):
        dw = f"schedule/day[{d}]"
        day_date = _date(_clean(day.get("date")), f"{dw}/@date")
        day_start = day_change
        if text := _clean(day.get("start")):
            day_start = _moment(text, f"{dw}/@start", tz).time()
        for r, room in enumerate(day.iterfind("room"), 1):
            listed_as = _clean(room.get("name"))
            for e, event in enumerate(room.iterfind("event"), 1):
                event_id = _clean(event.get("id"))
                path = f'{dw}/room[@name="{listed_as or ""}"]/event' + (
                    f'[@id="{event_id}"]' if event_id else f"[{e}]"
                )
                where = f"line {lines.get(id(event), '?')}: {path}"
                try:
                    if not listed_as:
                        raise _Skip(f"{dw}/room[{r}] has no name: a session with no room")
                    name = rooms.place(listed_as, where, reading)
                    found.append(
                        _xml_event(
                            event,
                            where,
                            room=name,
                            day=day_date,
                            day_start=day_start,
                            tz=tz,
                            reading=reading,
                        )
                    )
                except _LeftOut:
                    continue
                except (_Skip, InvalidMessage, OverflowError) as exc:
                    reading.skip(where, _problem(exc))
    return conference, rooms, found


def _problem(exc: Exception) -> str:
    return exc.message if isinstance(exc, InvalidMessage) else str(exc)


def _xml_event(
    event: ET.Element,
    where: str,
    *,
    room: str,
    day: date | None,
    day_start: time,
    tz: ZoneInfo,
    reading: _Reading,
) -> _Entry:
    def text(tag: str, limit: int = MAX_LINE) -> str | None:
        return _capped(_clean(event.findtext(tag)), limit, f"{where}/{tag}", reading)

    title = text("title")
    if not title:
        raise _LeftOut
    said = _clean(event.findtext("room"))
    if said and said != room:
        # Merged files name a room two ways; the structure is what the tools display.
        reading.repair(where, f"its <room> says {said!r}", f"kept in {room!r}, where it is listed")
    start, end, written = _span(
        where,
        "/",
        absolute=_clean(event.findtext("date")),
        day=day,
        clock=_clean(event.findtext("start")),
        duration=_clean(event.findtext("duration")),
        day_change=day_start,
        tz=tz,
    )
    event_id = _clean(event.get("id"))
    session = Session(
        id="",
        title=title,
        room=room,
        start=start,
        end=end,
        speakers=tuple(
            n
            for p in event.iterfind("persons/person")
            if (n := _capped(_clean(p.text), MAX_LINE, f"{where}/persons", reading))
        ),
        track=text("track"),
        language=text("language"),
        type=text("type"),
        subtitle=text("subtitle"),
        # The abstract is the short text a screen has room for; some exports fill in only the
        # description.
        abstract=text("abstract", MAX_TEXT) or text("description", MAX_TEXT),
        source_id=event_id or "",
    )
    return _Entry(where, session, written, _clean(event.get("guid")), event_id)


# ---- JSON ------------------------------------------------------------------------------------


def _load_json(data: bytes) -> Any:
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidMessage(
            f"line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})"
        ) from None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise InvalidMessage(f"line {line}, column {column}: not UTF-8 text") from None
    except RecursionError:
        raise InvalidMessage("JSON nested too deeply") from None
    if isinstance(doc, dict | list):
        _refuse_surrogates(doc)
    return doc


_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_surrogates(doc: dict[str, Any] | list[Any]) -> None:
    """Refuse a lone surrogate: a `\\ud800`-`\\udfff` escape that is not half of a pair. Python
    reads it into a str, but no UTF-8 encoder writes it, so the program could not be stored."""
    stack: list[tuple[str, dict[str, Any] | list[Any]]] = [("", doc)]
    while stack:
        where, value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and _SURROGATE.search(key):
                raise InvalidMessage(
                    f"{where or 'the document'}: the key {json.dumps(key)} is not Unicode text"
                    " (it holds a lone surrogate escape)"
                )
            if isinstance(item, str):
                if m := _SURROGATE.search(item):
                    raise InvalidMessage(
                        f"{_child(where, key)}: not Unicode text"
                        f" (it holds a lone surrogate escape, {m[0]!a})"
                    )
            elif isinstance(item, dict | list):
                stack.append((_child(where, key), item))


def _child(where: str, key: str | int) -> str:
    return _at(where, key) if isinstance(key, str) else f"{where}[{key}]"


def _obj(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidMessage(f"{where}: expected an object, got {_kind(value)}")
    return value


def _arr(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidMessage(f"{where}: expected a list, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _str(obj: dict[str, Any], key: str, where: str) -> str | None:
    """A text or number field as clean text; missing, null or blank is None."""
    value = obj.get(key)
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if value is None:
        return None
    raise InvalidMessage(f"{_at(where, key)}: expected text, got {_kind(value)}")


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _texts(
    obj: dict[str, Any],
    key: str,
    where: str,
    *,
    prefer: str | None,
    reading: _Reading,
    limit: int = MAX_LINE,
) -> tuple[str | None, dict[str, str]]:
    """A text that may be given per language ({"en": ..., "fr": ...}, as pretalx does): the one
    to show, and all of them when there are several."""
    value = obj.get(key)
    at = _at(where, key)
    if not isinstance(value, dict):
        return _capped(_str(obj, key, where), limit, at, reading), {}
    texts: dict[str, str] = {}
    for lang, text in value.items():
        if not isinstance(text, str | None):
            raise InvalidMessage(f"{at}.{lang}: expected text, got {_kind(text)}")
        if text := _capped(_clean(text), limit, f"{at}.{lang}", reading):
            texts[lang] = text
    return _languages(texts, prefer)


def _person(value: object, where: str) -> str | None:
    if isinstance(value, str):
        return _clean(value)
    person = _obj(value, where)
    return _str(person, "public_name", where) or _str(person, "name", where)


def _from_schedule_json(
    doc: dict[str, Any], venue_zone: str | None, reading: _Reading
) -> tuple[Conference, _Rooms, list[_Entry]]:
    cw = "schedule.conference"
    conf = _obj(_obj(doc["schedule"], "schedule").get("conference"), cw)
    zone, tz = _zone(venue_zone, _str(conf, "time_zone_name", cw), f"{cw}.time_zone_name")
    conference = _conference(
        _str(conf, "acronym", cw),
        _str(conf, "title", cw),
        _date(_str(conf, "start", cw), f"{cw}.start"),
        _date(_str(conf, "end", cw), f"{cw}.end"),
        zone,
    )
    day_change = DAY_CHANGE
    if text := _str(conf, "day_change", cw):
        day_change = _clock(text, f"{cw}.day_change")
    rooms = _Rooms()
    if "rooms" in conf:
        for i, item in enumerate(_arr(conf["rooms"], f"{cw}.rooms")):
            rw = f"{cw}.rooms[{i}]"
            names: dict[str, str] = {}
            if isinstance(item, str):
                name = _clean(item)
            else:
                name, names = _texts(_obj(item, rw), "name", rw, prefer=None, reading=reading)
            if name:
                rooms.define(name, names)
    rooms.listed = bool(rooms.names)
    found: list[_Entry] = []
    for d, item in enumerate(_arr(conf.get("days"), f"{cw}.days")):
        dw = f"{cw}.days[{d}]"
        day = _obj(item, dw)
        day_date = _date(_str(day, "date", dw), f"{dw}.date")
        day_start = day_change
        if text := _str(day, "day_start", dw):
            day_start = _moment(text, f"{dw}.day_start", tz).time()
        for room_name, events in _obj(day.get("rooms"), f"{dw}.rooms").items():
            rw = f"{dw}.rooms[{json.dumps(room_name, ensure_ascii=False)}]"
            listed_as = _clean(room_name)
            for i, entry in enumerate(_arr(events, rw)):
                where = f"{rw}[{i}]"
                try:
                    if not listed_as:
                        raise _Skip(f"{rw}: a room without a name: a session with no room")
                    name = rooms.place(listed_as, where, reading)
                    event = _obj(entry, where)
                    found.append(
                        _json_event(
                            event,
                            where,
                            room=name,
                            day=day_date,
                            day_start=day_start,
                            tz=tz,
                            reading=reading,
                        )
                    )
                except _LeftOut:
                    continue
                except (_Skip, InvalidMessage, OverflowError) as exc:
                    reading.skip(where, _problem(exc))
    return conference, rooms, found


def _json_event(
    event: dict[str, Any],
    where: str,
    *,
    room: str,
    day: date | None,
    day_start: time,
    tz: ZoneInfo,
    reading: _Reading,
) -> _Entry:
    language = _str(event, "language", where)
    title, titles = _texts(event, "title", where, prefer=language, reading=reading)
    if not title:
        raise _LeftOut
    said = event.get("room")
    if isinstance(said, str) and _clean(said) and _clean(said) != room:
        # Merged files name a room two ways; the structure is what the tools display.
        reading.repair(
            where, f"its room field says {_clean(said)!r}", f"kept in {room!r}, where it is listed"
        )
    start, end, written = _span(
        where,
        ".",
        absolute=_str(event, "date", where),
        day=day,
        clock=_str(event, "start", where),
        duration=_str(event, "duration", where),
        day_change=day_start,
        tz=tz,
    )
    persons = _arr(event.get("persons") or [], f"{where}.persons")
    abstract, abstracts = _texts(
        event, "abstract", where, prefer=language, reading=reading, limit=MAX_TEXT
    )
    if not abstract:
        abstract, abstracts = _texts(
            event, "description", where, prefer=language, reading=reading, limit=MAX_TEXT
        )
    track, tracks = _texts(event, "track", where, prefer=None, reading=reading)
    event_id = _str(event, "id", where)
    session = Session(
        id="",
        title=title,
        room=room,
        start=start,
        end=end,
        speakers=tuple(
            n
            for j, p in enumerate(persons)
            if (n := _capped(_person(p, f"{where}.persons[{j}]"), MAX_LINE, where, reading))
        ),
        track=track,
        language=language,
        type=_str(event, "type", where),
        subtitle=_texts(event, "subtitle", where, prefer=language, reading=reading)[0],
        abstract=abstract,
        titles=titles,
        abstracts=abstracts,
        tracks=tracks,
        source_id=event_id or "",
    )
    return _Entry(where, session, written, _str(event, "guid", where), event_id)


# ---- pretalx widget JSON ---------------------------------------------------------------------


def _ref(value: object, where: str) -> str:
    # pretalx ids are integers; compared as text so that "3" and 3 are the same room.
    if isinstance(value, int | str) and not isinstance(value, bool):
        return str(value)
    raise InvalidMessage(f"{where}: expected an id, got {_kind(value)}")


def _table(
    doc: dict[str, Any], key: str, id_key: str, name_key: str, reading: _Reading
) -> dict[str, tuple[str, dict[str, str]]]:
    """id -> (name, names per language) of pretalx's rooms, tracks or speakers."""
    table: dict[str, tuple[str, dict[str, str]]] = {}
    for i, item in enumerate(_arr(doc.get(key, []), key)):
        where = f"{key}[{i}]"
        entry = _obj(item, where)
        name, names = _texts(entry, name_key, where, prefer=None, reading=reading)
        if not name:
            raise InvalidMessage(f"{where}.{name_key}: missing or empty")
        table[_ref(entry.get(id_key), f"{where}.{id_key}")] = name, names
    return table


def _from_widget(
    doc: dict[str, Any], venue_zone: str | None, name: str, reading: _Reading
) -> tuple[Conference, _Rooms, list[_Entry]]:
    talks = _arr(doc["talks"], "talks")
    zone, tz = _zone(venue_zone, _str(doc, "timezone", ""), "timezone")
    # The widget data names no conference: the given title, else the file's name, stands in.
    conference = _conference(
        None,
        PurePath(name).stem if name.endswith(".json") else name,
        _date(_str(doc, "event_start", ""), "event_start"),
        _date(_str(doc, "event_end", ""), "event_end"),
        zone,
    )
    table = _table(doc, "rooms", "id", "name", reading)
    rooms = _Rooms()
    for room_name, names in table.values():
        rooms.define(room_name, names)
    tracks = _table(doc, "tracks", "id", "name", reading)
    speakers = {k: v[0] for k, v in _table(doc, "speakers", "code", "name", reading).items()}
    found: list[_Entry] = []
    for i, item in enumerate(talks):
        where = f"talks[{i}]"
        try:
            talk = _obj(item, where)
            found.append(
                _talk(
                    talk,
                    where,
                    rooms=table,
                    tracks=tracks,
                    speakers=speakers,
                    tz=tz,
                    reading=reading,
                )
            )
        except _LeftOut:
            continue
        except (_Skip, InvalidMessage, OverflowError) as exc:
            reading.skip(where, _problem(exc))
    return conference, rooms, found


def _talk(
    talk: dict[str, Any],
    where: str,
    *,
    rooms: dict[str, tuple[str, dict[str, str]]],
    tracks: dict[str, tuple[str, dict[str, str]]],
    speakers: dict[str, str],
    tz: ZoneInfo,
    reading: _Reading,
) -> _Entry:
    language = _str(talk, "content_locale", where)
    title, titles = _texts(talk, "title", where, prefer=language, reading=reading)
    if not title:
        raise _LeftOut
    if talk.get("room") is None:
        raise _LeftOut  # a blocker, or a talk not yet placed
    room = rooms.get(_ref(talk["room"], f"{where}.room"))
    if room is None:
        raise _Skip(f"{where}.room: {talk['room']!r} is not one of the rooms")
    written = _str(talk, "start", where)
    if not written:
        raise _Skip(f"{where}: no start")
    start = _moment(written, f"{where}.start", tz).astimezone(UTC)
    end = start
    if ends := _str(talk, "end", where):
        end = _moment(ends, f"{where}.end", tz).astimezone(UTC)
    else:
        reading.repair(where, "no end", "kept as a moment (no length)")
    if end < start:
        raise _Skip(f"{where}.end: before its start")
    listed = _arr(talk.get("speakers") or [], f"{where}.speakers")
    codes = [_ref(c, f"{where}.speakers[{j}]") for j, c in enumerate(listed)]
    if unknown := [c for c in codes if c not in speakers]:
        reading.repair(where, f"unknown speaker codes {unknown}", "left out")
    track: str | None = None
    track_names: dict[str, str] = {}
    if talk.get("track") is not None:
        found = tracks.get(_ref(talk["track"], f"{where}.track"))
        if found is None:
            reading.repair(where, f"track {talk['track']!r} is not one of the tracks", "no track")
        else:
            track, track_names = found
    abstract, abstracts = _texts(
        talk, "abstract", where, prefer=language, reading=reading, limit=MAX_TEXT
    )
    talk_id = _str(talk, "id", where)
    session = Session(
        id="",
        title=title,
        room=room[0],
        start=start,
        end=end,
        speakers=tuple(speakers[c] for c in codes if c in speakers),
        track=track,
        language=language,
        type=_str(talk, "slot_type", where),
        abstract=abstract,
        titles=titles,
        abstracts=abstracts,
        tracks=track_names,
        source_id=talk_id or "",
    )
    # pretalx's talk code is its stable id; a break has neither code nor id.
    return _Entry(where, session, written, _str(talk, "code", where), talk_id)
