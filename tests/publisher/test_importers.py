"""Schedule importers: each format from small fixtures, bad input, and the real shared exports."""

from __future__ import annotations

import json
import random
import re
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from feed import keys
from feed.errors import InvalidMessage
from feed.program import Program
from publisher.importers import Report, read

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "schedules"
GOOD = ["frab-midnight.xml", "pentabarf.xml", "schedule.json", "pretalx-widget.json"]


# The XML fixtures name no zone: an import needs the venue's.
NEEDS_ZONE = {"frab-midnight.xml": "UTC", "pentabarf.xml": "UTC"}


def load(
    name: str, venue_zone: str | None = None, known_rooms: dict[str, str] | None = None
) -> Program:
    data = (FIXTURES / name).read_bytes()
    zone = venue_zone or NEEDS_ZONE.get(name)
    return read(data, source=name, venue_zone=zone, known_rooms=known_rooms).program


def utc(
    year: int, month: int, day: int, hour: int, minute: int = 0, *, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def by_id(p: Program) -> dict[str, dict[str, object]]:
    return {s["id"]: s for s in p.to_json(p.conference.timezone or "UTC")["sessions"]}


# ---- each format -----------------------------------------------------------------------------


def test_frab_xml_in_the_zone_given_and_past_midnight() -> None:
    p = load("frab-midnight.xml", venue_zone="UTC")
    assert p.conference.id == "nightcon-2019"
    assert p.conference.title == "Night Conference"
    assert p.conference.timezone == "UTC"  # the file names none: the one given
    assert [(r.id, r.name) for r in p.rooms] == [
        ("salle-atlas", "Salle Atlas"),
        ("room-97b0e0", "القاعة الكبرى"),
    ]
    late, after = (s for s in p.sessions if s.room == "salle-atlas")
    assert late.id == "3f2b9c1e-0a4d-4e65-9a51-6c1d2e3f4a5b"
    assert (late.start, late.end) == (utc(2019, 4, 17, 22, 30), utc(2019, 4, 17, 23, 30))
    assert late.title == "Late   keynote"  # as written, only the outer whitespace trimmed
    assert late.speakers == ("Amina El Idrissi", "Jean Dupont")
    # verbatim: the XML decoding applies, nothing else (no HTML parsing)
    assert late.abstract == "<p>Cities &amp; <b>AI</b></p><p>Second&nbsp;paragraph</p>"
    assert (late.track, late.type, late.language) == ("Main", "lecture", "fr")
    assert (late.subtitle, after.subtitle, after.track) == ("Before midnight", None, None)
    # 00:30 is before the day's 10:00 start: the night after, the next calendar date
    assert (after.start, after.end) == (utc(2019, 4, 18, 0, 30), utc(2019, 4, 18, 1, 15, second=30))
    assert after.abstract == "Only a description"
    arabic = next(s for s in p.sessions if s.room == "room-97b0e0")
    assert arabic.id == "nightcon-2019-103"  # an empty guid is no guid
    assert arabic.source_id == "103"


def test_a_file_without_zone_is_read_in_the_venue_zone() -> None:
    p = load("frab-midnight.xml", venue_zone="Africa/Casablanca")
    assert p.conference.timezone == "Africa/Casablanca"
    late = by_id(p)["3f2b9c1e-0a4d-4e65-9a51-6c1d2e3f4a5b"]
    assert (late["start"], late["end"]) == (
        "2019-04-17T22:30:00+01:00",
        "2019-04-17T23:30:00+01:00",
    )
    assert p.sessions[-1].start == utc(2019, 4, 17, 23, 30)  # 00:30 local on the 18th


def test_pentabarf_xml_without_guid_or_date() -> None:
    p = load("pentabarf.xml")
    assert p.conference.id == "penta-days-2015"
    assert [r.id for r in p.rooms] == ["janson", "h-2215-ferrer"]  # the empty room counts too
    sessions = {s.id: s for s in p.sessions}
    assert set(sessions) == {"penta-days-2015-2632", "penta-days-2015-2700", "penta-days-2015-2633"}
    assert sessions["penta-days-2015-2632"].abstract == "<p>Opening talk.</p>"
    # before the conference's 09:00 day change: the next morning
    assert sessions["penta-days-2015-2700"].start == utc(2015, 2, 1, 8, 30)
    # an event without <room> is in the room it is listed under
    assert sessions["penta-days-2015-2633"].room == "h-2215-ferrer"
    assert sessions["penta-days-2015-2633"].language is None


def test_schedule_json_with_guids_and_offsets() -> None:
    p = load("schedule.json")
    assert p.conference.id == "scec19"
    assert p.conference.timezone == "Africa/Casablanca"
    assert [r.id for r in p.rooms] == ["atlas", "hall-b"]
    keynote, night, closing = p.sessions
    assert keynote.id == "0b0e7c52-5d5e-4c8e-9a43-7e2f3c1d0001"
    assert keynote.start == utc(2019, 4, 17, 9)
    assert keynote.speakers == ("Amina El Idrissi", "John Smith")  # public_name, else name
    assert keynote.abstract == '<p>Une &eacute;tude &amp; un <a href="x">lien</a></p>'
    assert night.start == utc(2019, 4, 17, 22, 30)
    assert night.abstract == "Smart mobility"
    assert closing.start == utc(2019, 4, 18, 9)  # a "Z" date wins over the "start" clock
    doc = by_id(p)
    assert doc[keynote.id]["start"] == "2019-04-17T10:00:00+01:00"


def test_a_venue_zone_does_not_move_times_that_carry_an_offset() -> None:
    p = load("schedule.json", venue_zone="Europe/Berlin")
    assert p.conference.timezone == "Europe/Berlin"
    assert p.sessions[0].start == utc(2019, 4, 17, 9)
    assert p.to_json("Europe/Berlin")["sessions"][0]["start"] == "2019-04-17T11:00:00+02:00"


def test_pretalx_widget_with_i18n_fields() -> None:
    p = load("pretalx-widget.json")
    assert p.conference.id == "pretalx-widget"  # the widget names no conference: the file does
    assert p.conference.timezone == "Africa/Casablanca"
    assert [(r.id, r.name) for r in p.rooms] == [("atlas", "Atlas"), ("hall-b", "Hall B")]
    keynote, coffee, panel = p.sessions
    assert keynote.id == "KEYNT1"
    assert keynote.title == "L'IA au service des citoyens"  # the talk's own language
    assert keynote.titles == {
        "en": "AI for citizens",
        "fr": "L'IA au service des citoyens",
        "ar": "الذكاء الاصطناعي في خدمة المواطن",
    }
    assert keynote.speakers == ("Amina El Idrissi", "John Smith")
    assert keynote.track == "Artificial intelligence"
    assert keynote.tracks == {"en": "Artificial intelligence", "fr": "Intelligence artificielle"}
    assert keynote.abstract == "<p>Opening &amp; welcome</p>"
    assert (keynote.start, keynote.end) == (utc(2019, 4, 17, 9), utc(2019, 4, 17, 9, 45))
    # a break with a room and a title is shown; its id falls back to the conference and its id
    assert (coffee.id, coffee.type, coffee.title) == ("pretalx-widget-12", "break", "Coffee break")
    assert panel.titles == {}  # a plain string title
    assert panel.room == "hall-b"
    # the untitled break and the talk without a room are left out
    assert len(p.sessions) == 3


@pytest.mark.parametrize("name", GOOD)
def test_the_format_comes_from_the_content_not_the_name(name: str) -> None:
    def seen(p: Program) -> list[tuple[str, datetime, str]]:
        return [(s.title, s.start, s.room) for s in p.sessions]

    data = (FIXTURES / name).read_bytes()
    zone = NEEDS_ZONE.get(name)
    assert seen(read(data, source="upload.bin", venue_zone=zone).program) == seen(load(name))
    assert seen(read(b"\xef\xbb\xbf" + data, source="with-bom", venue_zone=zone).program) == seen(
        load(name)
    )


@pytest.mark.parametrize("name", GOOD)
def test_reimport_with_the_stored_mapping_keeps_ids(name: str) -> None:
    first = load(name)
    known = {r.name: r.id for r in first.rooms}
    assert load(name, known_rooms=known) == first
    # a stored mapping wins over the slug, and stored ids stay reserved
    renamed = {first.rooms[0].name: "kept-id", "Gone": first.rooms[1].id}
    again = load(name, known_rooms=renamed)
    assert again.rooms[0].id == "kept-id"
    assert again.rooms[1].id == first.rooms[1].id + "-2"


# ---- bad input -------------------------------------------------------------------------------

FRAB = (FIXTURES / "frab-midnight.xml").read_text()
SCHEDULE = (FIXTURES / "schedule.json").read_text()
WIDGET = (FIXTURES / "pretalx-widget.json").read_text()


def edit_json(text: str, edits: dict[str, object]) -> bytes:
    """The JSON `text` with values set at "/"-separated paths."""
    doc = json.loads(text)
    for path, value in edits.items():
        *parents, last = path.split("/")
        target = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return json.dumps(doc).encode()


DAY1 = "schedule/conference/days/1/rooms"
BROKEN: list[tuple[bytes, list[str]]] = [
    (b"", ["empty"]),
    (b"  \n\t ", ["empty"]),
    (b"Title,Start\nKeynote,10:00\n", ["not a schedule"]),
    (b"<html><body>Not found</body></html>", ["<html>", "not a frab <schedule>"]),
    (b"<schedule><conference><title>x</title></conference></schedule>", ["no sessions"]),
    (b"<schedule><day/></schedule>", ["schedule/conference", "missing"]),
    (b'<?xml version="1.0" encoding="latin-1"?><schedule>\xff<</schedule>', ["line 1"]),
    (b'{"rooms": []}', ["unknown JSON"]),
    (b"[1, 2]", ["unknown JSON"]),
    (b'{"talks": "x"}', ["talks: expected a list"]),
    (b'{"schedule": {"conference": "x"}}', ["schedule.conference: expected an object"]),
    (b'{\n "schedule": \xff}', ["line 2, column 14: not UTF-8 text"]),
    (b'{"schedule": {}, }', ["line 1, column 18: invalid JSON (Expecting property name"]),
    (b'<?xml version="1.0" encoding="utf-0"?><schedule/>', ["unsupported XML encoding"]),
    (b"[" * 100_000, ["nested too deeply"]),
    (FRAB.replace("<start>00:30</start>", "<start>24:30</start>").encode(), ["/start", "24:30"]),
    (
        FRAB.replace("<duration>01:00</duration>", "<duration>1h</duration>").encode(),
        ['schedule/day[1]/room[@name="Salle Atlas"]/event[@id="101"]/duration', "'1h'"],
    ),
    (
        FRAB.replace(
            "8d7c6b5a-4f3e-4d2c-9b1a-0e9f8d7c6b5a", "3f2b9c1e-0a4d-4e65-9a51-6c1d2e3f4a5b"
        ).encode(),
        ['event[@id="102"]: duplicate session id', "also used at line 15: schedule/day[1]"],
    ),
    (FRAB.replace('<event guid="" id="103">', "<event>").encode(), ["event[1]", "no guid and no"]),
    (FRAB.replace("<room>Salle Atlas</room>", "<room>Salle X</room>", 1).encode(), ["'Salle X'"]),
    (FRAB.replace(' date="2019-04-17"', "").encode(), ["no date"]),
    (
        FRAB.replace("</acronym>", "</acronym><time_zone_name>CET+1</time_zone_name>").encode(),
        ["schedule/conference/time_zone_name: unknown time zone 'CET+1'"],
    ),
    (
        edit_json(SCHEDULE, {f"{DAY1}/Atlas/0/date": None, f"{DAY1}/Atlas/0/start": "25:99"}),
        ["schedule.conference.days[1].rooms[\"Atlas\"][0].start: '25:99'"],
    ),
    (edit_json(SCHEDULE, {f"{DAY1}/Atlas/0/duration": 90}), ["[0].duration", "'90'"]),
    (edit_json(SCHEDULE, {f"{DAY1}/Atlas/0/date": "9999-12-31T23:30:00+01:00"}), ["range"]),
    (edit_json(SCHEDULE, {f"{DAY1}/Atlas/0/date": "1950-01-01T10:00:00+01:00"}), ["outside"]),
    (edit_json(SCHEDULE, {f"{DAY1}/Atlas/0/duration": "999:00"}), ["longer than"]),
    (FRAB.replace("utf-8", "Shift_JIS").replace("UTF-8", "Shift_JIS").encode(), ["upload.dat"]),
    (edit_json(SCHEDULE, {f"{DAY1}/Atlas/0/title": ["x"]}), ["[0].title: expected text"]),
    (edit_json(SCHEDULE, {f"{DAY1}/Atlas/0/persons": [7]}), ["[0].persons[0]"]),
    (edit_json(SCHEDULE, {f"{DAY1}/Atlas/0/room": "Nowhere"}), ["room field says 'Nowhere'"]),
    (edit_json(SCHEDULE, {f"{DAY1}/Atlas/0/date": "tomorrow"}), ["[0].date", "ISO 8601"]),
    (edit_json(SCHEDULE, {"schedule/conference/days/0/rooms/Atlas": {}}), ["expected a list"]),
    (edit_json(SCHEDULE, {"schedule/conference/time_zone_name": "Mars/Base"}), ["Mars/Base"]),
    (
        edit_json(SCHEDULE, {"schedule/conference/acronym": None, "schedule/conference/title": ""}),
        ["neither an acronym nor a title"],
    ),
    (edit_json(WIDGET, {"talks/0/room": 9}), ["talks[0].room", "9"]),
    (edit_json(WIDGET, {"talks/0/speakers": ["NOBODY"]}), ["talks[0]: unknown speaker", "NOBODY"]),
    (edit_json(WIDGET, {"talks/0/track": 6}), ["talks[0]: track 6 is not one of the tracks"]),
    (edit_json(WIDGET, {"talks/0/title": {"en": 3}}), ["talks[0].title.en"]),
    (edit_json(WIDGET, {"talks/0/end": "2019-04-17T08:00:00+00:00"}), ["talks[0].end"]),
    (edit_json(WIDGET, {"talks/3/code": "KEYNT1"}), ["talks[3]: duplicate session id 'KEYNT1'"]),
    (edit_json(WIDGET, {"rooms/0": {"id": 1}}), ["rooms[0].name"]),
    (edit_json(WIDGET, {"timezone": "Europe"}), ["timezone: unknown time zone 'Europe'"]),
]


@pytest.mark.parametrize(("data", "expected"), BROKEN)
def test_bad_input_gets_a_clear_error(data: bytes, expected: list[str]) -> None:
    """With --strict, as every problem was before repairs: the whole file refused, saying where."""
    with pytest.raises(InvalidMessage) as info:
        read(data, source="upload.dat", venue_zone="UTC" if data[:1] == b"<" else None,
              strict=True)  # fmt: skip
    message = info.value.message
    assert message.startswith("upload.dat: ")
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("empty.xml", "empty.xml: the file is empty"),
        ("broken-tag.xml", "broken-tag.xml: line 5, column 44: invalid XML (mismatched tag)"),
        ("broken-syntax.json", "broken-syntax.json: line 5, column 16: invalid JSON"),
        ("entities.xml", "entities.xml: DOCTYPE declarations are refused"),
    ],
)
def test_broken_files(name: str, expected: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        load(name)
    assert info.value.message.startswith(expected)


def test_a_file_that_names_its_zone_is_read_in_it_and_served_in_the_venue_zone() -> None:
    doc = edit_json(SCHEDULE, {"schedule/conference/time_zone_name": "Europe/Berlin"})
    doc = edit_json(doc.decode(), {f"{DAY1}/Atlas/0/date": None, f"{DAY1}/Atlas/0/start": "10:00"})
    program = read(doc, source="berlin.json", venue_zone="Africa/Casablanca").program
    assert program.conference.timezone == "Africa/Casablanca"
    first = next(s for s in program.sessions if s.start.hour == 8)  # 10:00 in Berlin, summer
    rendered = {s["id"]: s for s in program.to_json("Africa/Casablanca")["sessions"]}
    assert rendered[first.id]["start"].endswith("09:00:00+01:00")


def test_an_invalid_venue_zone_is_an_error() -> None:
    with pytest.raises(InvalidMessage, match=r"venue zone.*Atlantis"):
        load("schedule.json", venue_zone="Atlantis")


@pytest.mark.parametrize("name", GOOD)
def test_damaged_files_never_raise_anything_but_invalid_message(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    rng = random.Random(name)
    damaged = [data[:cut] for cut in range(0, len(data), max(1, len(data) // 60))]
    for _ in range(300):
        chars = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice(b'<>{}[]":,&;/ 0aZ\xff\x00')
        damaged.append(bytes(chars))
    for sample in damaged:
        try:
            read(sample, source=name)
        except InvalidMessage as exc:
            assert exc.message.startswith(name + ": ")


# ---- the real exports in ../shared/data/schedules --------------------------------------------

# What the folder's README says; the test counts each file's content on its own as well.
README_COUNTS = {
    "31c3-schedule.xml": (4, 138),
    "camp2019-frab-schedule.json": (2, 79),
    "fosdem-2015-schedule.xml": (25, 551),
    "pretalx-democon-schedule.json": (2, 36),
    "rc3-channels-2020-pretalx-schedule.json": (5, 48),
}


# The exports that name no time zone, and their venues'.
SHARED_ZONES = {
    "31c3-schedule.xml": "Europe/Berlin",
    "fosdem-2015-schedule.xml": "Europe/Brussels",
    "rc3-channels-2020-pretalx-schedule.json": "Europe/Berlin",
}


def shared_files() -> list[Path]:
    if not SHARED.is_dir():
        return []
    return sorted(p for p in SHARED.iterdir() if p.suffix in (".xml", ".json"))


def count(path: Path) -> tuple[int, int]:
    """Rooms and events as the file itself lists them, counted without the importer.

    Rooms: the conference's room list when there is one, else the distinct room names of the days
    (a room is listed again on every day it is used). Events: every event under a day's room; none
    of the shared exports lists one event twice (their ids and guids are unique), so that is also
    the number of sessions.
    """
    if path.suffix == ".xml":
        root = ET.parse(path).getroot()
        names = {r.get("name") for r in root.iterfind("day/room")}
        return len(names), len(root.findall("day/room/event"))
    conference = json.loads(path.read_bytes())["schedule"]["conference"]
    days = conference["days"]
    names = {name for day in days for name in day["rooms"]}
    rooms = len(conference["rooms"]) if "rooms" in conference else len(names)
    return rooms, sum(len(events) for day in days for events in day["rooms"].values())


@pytest.mark.parametrize("path", shared_files() or [None], ids=lambda p: p.name if p else "none")
def test_shared_export(path: Path | None) -> None:
    if path is None:
        pytest.skip(f"{SHARED} is not there")
    data = path.read_bytes()
    started = time.perf_counter()
    zone = SHARED_ZONES.get(path.name)
    imported = read(data, source=path.name, venue_zone=zone, strict=True)
    p = imported.program
    assert imported.report == Report()  # these files are clean: nothing to repair or skip
    elapsed = time.perf_counter() - started
    assert elapsed < 2, f"{path.name} took {elapsed:.2f} s"  # about 0.03 s for FOSDEM's 900 KB

    assert (len(p.rooms), len(p.sessions)) == count(path)
    if path.name in README_COUNTS:
        assert (len(p.rooms), len(p.sessions)) == README_COUNTS[path.name]
    assert len({s.id for s in p.sessions}) == len(p.sessions)
    assert len({r.id for r in p.rooms}) == len(p.rooms)
    for room in p.rooms:
        assert keys.room_id(room.id) == room.id
    room_ids = {r.id for r in p.rooms}
    for s in p.sessions:
        assert s.start < s.end
        assert s.start.tzinfo is UTC and s.end.tzinfo is UTC
        assert s.room in room_ids
        assert s.title

    known = {r.name: r.id for r in p.rooms}
    again = read(data, source=path.name, venue_zone=zone, known_rooms=known).program
    assert again == p
    assert Program.from_json(p.to_json("Africa/Casablanca", with_source=True)) == p


def test_31c3_times_without_their_date_elements() -> None:
    """The day-start rule checked on real data: drop 31C3's absolute <date> elements and its
    past-midnight talks (00:00, 00:15) must still land on the next calendar date."""
    path = SHARED / "31c3-schedule.xml"
    if not path.exists():
        pytest.skip(f"{path} is not there")
    data = path.read_bytes()
    stripped = re.sub(rb"<date>[^<]*</date>", b"", data)
    assert stripped != data
    original = read(data, source=path.name, venue_zone="Europe/Berlin").program
    assert read(stripped, source=path.name, venue_zone="Europe/Berlin").program.sessions == (
        original.sessions
    )
