"""Schedule importers: the programs conference tools export, read into one `Program`.

Three formats, told apart by their content: frab XML (also what pretalx and Pentabarf emit, FOSDEM
included), the C3VOC `schedule.json` that frab and pretalx export, and pretalx's widget JSON. Pure
functions over bytes; every problem in the input is an `InvalidMessage` that starts with the source
name and says where it is: the line and column of a syntax error, else the path of the field.
"""

from __future__ import annotations

import codecs
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from pathlib import PurePath
from typing import Any
from xml.parsers.expat import ErrorString
from zoneinfo import ZoneInfo

from feed.errors import InvalidMessage
from feed.program import Conference, Program, Room, Session, assign_room_ids, slugify, zone_info

DAY_CHANGE = time(6)  # when a file says nothing, a time before 06:00 is the night after the day

FIRST_YEAR, LAST_YEAR = 1970, 2100
MAX_SESSION = timedelta(hours=48)
MAX_ROOMS = 1000
MAX_SESSIONS = 20_000
_Found = list[tuple[str, Session]]  # each session with where it was found, for later errors


def parse(
    data: bytes,
    *,
    source: str,
    venue_zone: str | None = None,
    known_rooms: dict[str, str] | None = None,
    title: str | None = None,
) -> Program:
    """Read a schedule export.

    `title` names the conference when the format does not (pretalx's widget data); otherwise
    the file's name stands in for it.

    Times are in `venue_zone`, else the zone the file names, else UTC; times that carry an offset
    keep it. Room ids come from `known_rooms` (name -> id, kept from earlier imports) when it has
    the name, else from the name, so they stay stable across re-imports.
    """
    try:
        head = data.removeprefix(codecs.BOM_UTF8).lstrip()[:1]
        if not head:
            raise InvalidMessage("the file is empty")
        if head == b"<":
            conference, rooms, found = _from_xml(data, venue_zone)
        elif head in (b"{", b"["):
            doc = _load_json(data)
            if isinstance(doc, dict) and "schedule" in doc:
                conference, rooms, found = _from_schedule_json(doc, venue_zone)
            elif isinstance(doc, dict) and "talks" in doc:
                conference, rooms, found = _from_widget(doc, venue_zone, title or source)
            else:
                raise InvalidMessage(
                    "unknown JSON: expected a schedule.json ({'schedule': ...})"
                    " or a pretalx widget export ({'talks': ...})"
                )
        else:
            raise InvalidMessage(
                "not a schedule: expected frab XML (<schedule>), schedule.json or pretalx JSON"
            )
        return _program(conference, rooms, found, known_rooms or {})
    except InvalidMessage as exc:
        raise InvalidMessage(f"{source}: {exc.message}") from None
    except (ValueError, OverflowError, LookupError, UnicodeError) as exc:
        # What the checks above did not foresee (an odd encoding, a date the calendar cannot
        # hold) is still the file's fault, never the server's.
        raise InvalidMessage(f"{source}: cannot read it: {exc}") from None


def _program(
    conference: Conference, names: list[str], found: _Found, known: dict[str, str]
) -> Program:
    if not found:
        raise InvalidMessage("no sessions found")
    names = list(dict.fromkeys(names))
    ids = assign_room_ids(names, known)
    first_seen: dict[str, str] = {}
    sessions = []
    for where, s in found:
        if s.room not in ids:
            raise InvalidMessage(f"{where}: room {s.room!r} is not one of the file's rooms")
        if s.id in first_seen:
            raise InvalidMessage(
                f"{where}: duplicate session id {s.id!r}, also used at {first_seen[s.id]}"
            )
        first_seen[s.id] = where
        if not (s.start.year >= FIRST_YEAR and s.end.year <= LAST_YEAR):
            raise InvalidMessage(f"{where}: a date outside {FIRST_YEAR}-{LAST_YEAR}")
        if s.end - s.start > MAX_SESSION:
            raise InvalidMessage(f"{where}: a session longer than {MAX_SESSION}")
        sessions.append(replace(s, room=ids[s.room]))
    if len(names) > MAX_ROOMS or len(sessions) > MAX_SESSIONS:
        raise InvalidMessage(
            f"{len(names)} rooms and {len(sessions)} sessions; the limits are {MAX_ROOMS}"
            f" and {MAX_SESSIONS}"
        )
    return Program(conference, tuple(Room(ids[n], n) for n in names), tuple(sessions))


def _conference(
    acronym: str | None, title: str | None, start: date | None, end: date | None, zone: str
) -> Conference:
    name = acronym or title
    if not name:
        raise InvalidMessage("the conference has neither an acronym nor a title")
    return Conference(slugify(name, "conference"), title or name, zone, start, end)


def _zone(venue_zone: str | None, named: str | None, where: str) -> tuple[str, ZoneInfo]:
    """The zone the program is served in (the venue's, else the file's, else UTC), and the one
    its local times are read in (the file's own when it names one, else the venue's)."""
    try:
        if venue_zone:
            zone_info(venue_zone)
    except InvalidMessage as exc:
        raise InvalidMessage(f"venue zone: {exc.message}") from None
    try:
        read_in = zone_info(named or venue_zone or "UTC")
    except InvalidMessage as exc:
        raise InvalidMessage(f"{where}: {exc.message}") from None
    return venue_zone or named or "UTC", read_in


def _session_id(conference: Conference, guid: str | None, event_id: str | None, where: str) -> str:
    if guid:
        return guid
    if not event_id:
        raise InvalidMessage(f"{where}: an event needs a guid or an id")
    return f"{conference.id}-{event_id}"


# ---- values ----------------------------------------------------------------------------------


def _clean(value: str | None) -> str | None:
    if not value:
        return None
    return " ".join(value.split()) or None


_CLOCK = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?")
_DURATION = re.compile(r"(\d{1,3}):([0-5]\d)(?::([0-5]\d))?")


def _clock(value: str | None, where: str) -> time:
    m = _CLOCK.fullmatch(value or "")
    if not m or int(m[1]) > 23:
        raise InvalidMessage(f"{where}: {value!r} is not a time of day (HH:MM)")
    return time(int(m[1]), int(m[2]), int(m[3] or 0))


def _duration(value: str | None, where: str) -> timedelta:
    m = _DURATION.fullmatch(value or "")
    length = timedelta(hours=int(m[1]), minutes=int(m[2]), seconds=int(m[3] or 0)) if m else None
    if not length:
        raise InvalidMessage(f"{where}: {value!r} is not a positive duration (HH:MM)")
    return length


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
) -> tuple[datetime, datetime]:
    """Start and end in UTC, from an absolute `date` when there is one, else the day and a clock.

    Without an absolute date, a clock earlier than the day's start is past midnight: the next
    calendar date.
    """
    if absolute:
        start = _moment(absolute, f"{where}{sep}date", tz)
    else:
        if day is None:
            raise InvalidMessage(f"{where}: no date, neither in the event nor in its day")
        at = _clock(clock, f"{where}{sep}start")
        start = datetime.combine(day + timedelta(days=at < day_change), at, tzinfo=tz)
    start = start.astimezone(UTC)
    return start, start + _duration(duration, f"{where}{sep}duration")


class _TextOf(HTMLParser):
    # Block elements become spaces so that "<p>a</p><p>b</p>" reads "a b", not "ab".
    BLOCKS = frozenset(
        {"address", "blockquote", "br", "dd", "div", "dl", "dt", "h1", "h2", "h3", "h4", "h5"}
        | {"h6", "hr", "li", "ol", "p", "pre", "table", "td", "th", "tr", "ul"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self.parts.append(" ")


def _plain(html: str | None) -> str | None:
    if not html or ("<" not in html and "&" not in html):
        return _clean(html)
    parser = _TextOf()
    try:
        parser.feed(html)
        parser.close()
    except AssertionError:  # html.parser's answer to some bogus markup: keep the text as it is
        return _clean(html)
    return _clean("".join(parser.parts))


# ---- frab and Pentabarf XML ------------------------------------------------------------------


class _TreeBuilder(ET.TreeBuilder):
    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        # Entity declarations live in the DOCTYPE: refusing it stops billion-laughs expansion.
        raise InvalidMessage("DOCTYPE declarations are refused (they can define entities)")


def _from_xml(data: bytes, venue_zone: str | None) -> tuple[Conference, list[str], _Found]:
    parser = ET.XMLParser(target=_TreeBuilder())
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        line, column = exc.position
        raise InvalidMessage(
            f"line {line}, column {column + 1}: invalid XML ({ErrorString(exc.code)})"
        ) from None
    except LookupError as exc:  # expat asks Python for the codec the declaration names
        raise InvalidMessage(f"unsupported XML encoding ({exc})") from None
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
        _date(conf.findtext("start"), "schedule/conference/start"),
        _date(conf.findtext("end"), "schedule/conference/end"),
        zone,
    )
    day_change = DAY_CHANGE
    if text := conf.findtext("day_change"):
        day_change = _clock(text, "schedule/conference/day_change")
    names = [n for r in conf.iterfind("rooms/room") if (n := _clean(r.get("name")))]
    defined = bool(names)
    found: _Found = []
    for d, day in enumerate(root.iterfind("day"), 1):
        dw = f"schedule/day[{d}]"
        day_date = _date(day.get("date"), f"{dw}/@date")
        day_start = day_change
        if text := day.get("start"):
            day_start = _moment(text, f"{dw}/@start", tz).time()
        for r, room in enumerate(day.iterfind("room"), 1):
            name = _clean(room.get("name"))
            if not name:
                raise InvalidMessage(f"{dw}/room[{r}]: a room without a name")
            if not defined:
                names.append(name)
            for e, event in enumerate(room.iterfind("event"), 1):
                event_id = _clean(event.get("id"))
                where = f'{dw}/room[@name="{name}"]/event' + (
                    f'[@id="{event_id}"]' if event_id else f"[{e}]"
                )
                title = _clean(event.findtext("title"))
                if not title:
                    raise InvalidMessage(f"{where}/title: missing or empty")
                start, end = _span(
                    where,
                    "/",
                    absolute=_clean(event.findtext("date")),
                    day=day_date,
                    clock=_clean(event.findtext("start")),
                    duration=_clean(event.findtext("duration")),
                    day_change=day_start,
                    tz=tz,
                )
                session = Session(
                    id=_session_id(conference, _clean(event.get("guid")), event_id, where),
                    title=title,
                    room=_clean(event.findtext("room")) or name,
                    start=start,
                    end=end,
                    speakers=tuple(
                        n for p in event.iterfind("persons/person") if (n := _clean(p.text))
                    ),
                    track=_clean(event.findtext("track")),
                    language=_clean(event.findtext("language")),
                    type=_clean(event.findtext("type")),
                    subtitle=_clean(event.findtext("subtitle")),
                    # The abstract is the short text a screen has room for; some exports
                    # fill in only the description.
                    abstract=_plain(event.findtext("abstract") or event.findtext("description")),
                    source_id=event_id or "",
                )
                found.append((where, session))
    return conference, names, found


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


def _raw(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidMessage(f"{where}.{key}: expected text, got {_kind(value)}")


def _person(value: object, where: str) -> str | None:
    if isinstance(value, str):
        return _clean(value)
    person = _obj(value, where)
    return _str(person, "public_name", where) or _str(person, "name", where)


def _from_schedule_json(
    doc: dict[str, Any], venue_zone: str | None
) -> tuple[Conference, list[str], _Found]:
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
    names: list[str] = []
    if "rooms" in conf:
        for i, room in enumerate(_arr(conf["rooms"], f"{cw}.rooms")):
            if name := _person(room, f"{cw}.rooms[{i}]"):  # a room has a name as a person does
                names.append(name)
    defined = bool(names)
    found: _Found = []
    for d, item in enumerate(_arr(conf.get("days"), f"{cw}.days")):
        dw = f"{cw}.days[{d}]"
        day = _obj(item, dw)
        day_date = _date(_str(day, "date", dw), f"{dw}.date")
        day_start = day_change
        if text := _str(day, "day_start", dw):
            day_start = _moment(text, f"{dw}.day_start", tz).time()
        for room_name, events in _obj(day.get("rooms"), f"{dw}.rooms").items():
            rw = f"{dw}.rooms[{json.dumps(room_name, ensure_ascii=False)}]"
            name = _clean(room_name)
            if not name:
                raise InvalidMessage(f"{rw}: a room without a name")
            if not defined:
                names.append(name)
            for i, entry in enumerate(_arr(events, rw)):
                where = f"{rw}[{i}]"
                event = _obj(entry, where)
                title = _str(event, "title", where)
                if not title:
                    raise InvalidMessage(f"{where}.title: missing or empty")
                start, end = _span(
                    where,
                    ".",
                    absolute=_str(event, "date", where),
                    day=day_date,
                    clock=_str(event, "start", where),
                    duration=_str(event, "duration", where),
                    day_change=day_start,
                    tz=tz,
                )
                persons = _arr(event.get("persons", []), f"{where}.persons")
                event_id = _str(event, "id", where)
                session = Session(
                    id=_session_id(conference, _str(event, "guid", where), event_id, where),
                    title=title,
                    room=_str(event, "room", where) or name,
                    start=start,
                    end=end,
                    speakers=tuple(
                        n
                        for j, p in enumerate(persons)
                        if (n := _person(p, f"{where}.persons[{j}]"))
                    ),
                    track=_str(event, "track", where),
                    language=_str(event, "language", where),
                    type=_str(event, "type", where),
                    subtitle=_str(event, "subtitle", where),
                    abstract=_plain(
                        _raw(event, "abstract", where) or _raw(event, "description", where)
                    ),
                    source_id=event_id or "",
                )
                found.append((where, session))
    return conference, names, found


# ---- pretalx widget JSON ---------------------------------------------------------------------


def _i18n(value: object, where: str, language: str | None) -> tuple[str | None, dict[str, str]]:
    """A pretalx text that may be a {language: text} dict: the text to show, and all of them.

    The one to show is in the talk's own language, else English, else the first one given.
    """
    if value is None or isinstance(value, str):
        return _clean(value), {}
    texts = {}
    for lang, text in _obj(value, where).items():
        if not isinstance(text, str | None):
            raise InvalidMessage(f"{where}.{lang}: expected text, got {_kind(text)}")
        if text := _clean(text):
            texts[lang] = text
    shown = texts.get(language or "") or texts.get("en") or next(iter(texts.values()), None)
    return shown, texts if len(texts) > 1 else {}


def _ref(value: object, where: str) -> str:
    # pretalx ids are integers; compared as text so that "3" and 3 are the same room.
    if isinstance(value, int | str) and not isinstance(value, bool):
        return str(value)
    raise InvalidMessage(f"{where}: expected an id, got {_kind(value)}")


def _table(doc: dict[str, Any], key: str, id_key: str, name_key: str) -> dict[str, str]:
    table: dict[str, str] = {}
    for i, item in enumerate(_arr(doc.get(key, []), key)):
        where = f"{key}[{i}]"
        entry = _obj(item, where)
        name = _i18n(entry.get(name_key), f"{where}.{name_key}", None)[0]
        if not name:
            raise InvalidMessage(f"{where}.{name_key}: missing or empty")
        table[_ref(entry.get(id_key), f"{where}.{id_key}")] = name
    return table


def _from_widget(
    doc: dict[str, Any], venue_zone: str | None, name: str
) -> tuple[Conference, list[str], _Found]:
    zone, tz = _zone(venue_zone, _str(doc, "timezone", ""), "timezone")
    # The widget data names no conference: the given title, else the file's name, stands in.
    conference = _conference(
        None,
        PurePath(name).stem if name.endswith(".json") else name,
        _date(_str(doc, "event_start", ""), "event_start"),
        _date(_str(doc, "event_end", ""), "event_end"),
        zone,
    )
    rooms = _table(doc, "rooms", "id", "name")
    tracks = _table(doc, "tracks", "id", "name")
    speakers = _table(doc, "speakers", "code", "name")
    found: _Found = []
    for i, item in enumerate(_arr(doc["talks"], "talks")):
        where = f"talks[{i}]"
        talk = _obj(item, where)
        language = _str(talk, "content_locale", where)
        title, titles = _i18n(talk.get("title"), f"{where}.title", language)
        if talk.get("room") is None or not title:
            continue  # blockers and untitled breaks: nothing to show on a screen
        room = rooms.get(_ref(talk["room"], f"{where}.room"))
        if room is None:
            raise InvalidMessage(f"{where}.room: {talk['room']!r} is not one of the rooms")
        start = _moment(_str(talk, "start", where), f"{where}.start", tz).astimezone(UTC)
        end = _moment(_str(talk, "end", where), f"{where}.end", tz).astimezone(UTC)
        if end <= start:
            raise InvalidMessage(f"{where}.end: not after its start")
        listed = _arr(talk.get("speakers") or [], f"{where}.speakers")
        codes = [_ref(c, f"{where}.speakers[{j}]") for j, c in enumerate(listed)]
        if unknown := [c for c in codes if c not in speakers]:
            raise InvalidMessage(f"{where}.speakers: unknown speaker codes {unknown}")
        track = None
        if talk.get("track") is not None:
            track = tracks.get(_ref(talk["track"], f"{where}.track"))
            if track is None:
                raise InvalidMessage(f"{where}.track: {talk['track']!r} is not one of the tracks")
        talk_id = _str(talk, "id", where)
        session = Session(
            id=_session_id(conference, _str(talk, "code", where), talk_id, where),
            title=title,
            room=room,
            start=start,
            end=end,
            speakers=tuple(speakers[c] for c in codes),
            track=track,
            language=language,
            type=_str(talk, "slot_type", where),
            abstract=_plain(_i18n(talk.get("abstract"), f"{where}.abstract", language)[0]),
            titles=titles,
            source_id=talk_id or "",
        )
        found.append((where, session))
    return conference, list(rooms.values()), found
