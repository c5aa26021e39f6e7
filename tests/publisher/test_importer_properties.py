"""Property-based tests of the schedule importers: whatever file an organiser uploads, `parse`
returns a well-formed program or raises `InvalidMessage` saying what is wrong, never another
exception (which the API would answer with a 500).

Inputs: any bytes, any text, any JSON, and the fixtures' valid exports mutated (keys deleted,
values replaced with other types, elements removed, files truncated). Examples found by these
tests are pinned with `@example`.
"""

from __future__ import annotations

import copy
import encodings.aliases
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from feed import keys
from feed.program import Program
from publisher import importers
from publisher.importers import read
from tests.ours import ours

# Each property runs `max_examples` inputs (and its `@example`s); the file runs in about ten
# seconds. No example database (and Hypothesis's caches in a temporary directory): nothing is
# written under the repository.
FUZZ = settings(max_examples=600, deadline=None, database=None)

FIXTURES = Path(__file__).parent / "fixtures"
XML_DOCS = {name: (FIXTURES / name).read_bytes() for name in ["frab-midnight.xml", "pentabarf.xml"]}
JSON_DOCS = {
    name: (FIXTURES / name).read_bytes() for name in ["schedule.json", "pretalx-widget.json"]
}
VALID = {**XML_DOCS, **JSON_DOCS}


def check_program(p: Program) -> None:
    """What a successful import returns is well formed, and storable as the publisher stores it."""
    room_ids = [r.id for r in p.rooms]
    assert len(set(room_ids)) == len(room_ids)
    assert all(keys.room_id(rid) == rid for rid in room_ids)
    assert all(isinstance(r.name, str) and r.name.strip() for r in p.rooms)
    assert p.conference.id
    assert p.sessions
    session_ids = [s.id for s in p.sessions]
    assert len(set(session_ids)) == len(session_ids)
    for s in p.sessions:
        assert s.room in room_ids
        assert isinstance(s.title, str)
        assert s.title.strip()
        assert s.start.utcoffset() == timedelta(0)
        assert s.start <= s.end  # zero-length entries (deadlines, markers) are kept
        assert s.end - s.start <= importers.MAX_SESSION
        assert s.start.year >= importers.FIRST_YEAR
        assert s.end.year <= importers.LAST_YEAR
        assert all(isinstance(n, str) and n.strip() for n in s.speakers)
        for text in (s.title, s.abstract, *s.speakers, *s.titles.values()):
            assert text is None or text == clean(text)
    for zone in {p.conference.timezone or "UTC", "UTC"}:
        doc = p.to_json(zone, with_source=True)
        orjson.dumps(doc)  # what the publisher stores and sends
        assert Program.from_json(doc) == p


def clean(text: str) -> str:
    """A text as an import keeps it: as written, without control characters (C0 but tab and
    newline, DEL, C1) or outer whitespace."""
    return re.sub("[\x00-\x08\x0b-\x1f\x7f-\x9f]", "", text).strip()


def imports(data: bytes, **options: Any) -> Program | None:
    options.setdefault("source", "upload")
    program = ours(lambda: read(data, **options).program)
    event("imported" if program else "refused")  # see --hypothesis-show-statistics
    if program is not None:
        check_program(program)
    return program


# ---- values ----------------------------------------------------------------------------------

SURROGATES = st.characters(categories=["Cs"])
ANY_TEXT = st.text(st.characters() | SURROGATES, max_size=30)
HUGE_INTS = st.builds(
    lambda digits, sign: sign * (10**digits - 1), st.integers(19, 4300), st.sampled_from([1, -1])
)
# Strings the importers read as times, dates, zones, ids or HTML: valid, near-valid, extreme.
TRICKY = st.sampled_from(
    [
        *["", " ", "\t\n", "0", "-1", "null", "Atlas", "Hall B", "Salle Atlas", "SPK1", "AI"],
        *["00:00", "23:59", "24:00", "9:05", "99:59", "00:00:00", "000:00", "999:59", "00:60"],
        *["١٢:٣٠", "00:00:60", "2019-04-17", "2019-02-30", "0001-01-01", "9999-12-31"],
        *["2019-04-17T10:00:00", "2019-04-17T23:30:00+14:00", "0001-01-01T00:00:00+01:00"],
        *["9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59", "1969-12-31T23:59:59Z"],
        *["2100-12-31T23:00:00+00:00", "2019-04-17T10:00:00+01:00"],
        *["UTC", "Europe/Paris", "Africa/Casablanca", "Mars/Olympus", "Europe", "Europe/"],
        *["../../etc/passwd", "/etc/passwd", "zoneinfo", "tzdata", "__init__", "UTC\x00", "."],
        *["<p>a</p><p>b</p>", "<![CDATA[x", "<!x", "<!", "<![if !x]>", "&#99999999;"],
        *["&#x110000;", "<a href='x", "</", "<!--", "<?x", "&", "&amp", "<p", "a<b>c"],
    ]
)
TIMES = (
    st.datetimes().map(lambda d: d.isoformat())
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    | st.dates().map(lambda d: d.isoformat())
    | st.from_regex(r"\d{1,3}:[0-6]\d(:[0-6]\d)?", fullmatch=True)
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | HUGE_INTS
    | st.floats()
    | st.text(max_size=20)
    | ANY_TEXT
    | TRICKY
    | TIMES
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    """JSON as an export may hold it: lone surrogates as \\u escapes, NaN as NaN."""
    return json.dumps(value).encode()


# ---- any bytes, any text, any JSON -----------------------------------------------------------

HEADS = st.sampled_from(
    [b"", b"\xef\xbb\xbf", b" \n", b"<", b"{", b"[", b"<schedule>", b'{"schedule":', b'{"talks":']
)


@FUZZ
@given(st.builds(bytes.__add__, HEADS, st.binary(max_size=300)))
@example(b"\xef\xbb\xbf")
@example(b"<!DOCTYPE x [<!ENTITY a 'b'>]><schedule/>")
@example(b"[" * 100_000)
def test_any_bytes(data: bytes) -> None:
    imports(data)


@FUZZ
@given(st.text(st.characters() | SURROGATES, max_size=300), st.sampled_from(["utf-8", "utf-16"]))
def test_any_text(text: str, encoding: str) -> None:
    imports(text.encode(encoding, "surrogatepass"))


@FUZZ
@given(
    JSON
    | st.fixed_dictionaries({"schedule": JSON})
    | st.fixed_dictionaries({"schedule": st.fixed_dictionaries({"conference": JSON})})
    | st.fixed_dictionaries({"talks": JSON}, optional={"rooms": JSON, "speakers": JSON})
)
def test_any_json(value: Any) -> None:
    imports(dumps(value))


CODECS = st.sampled_from(sorted({*encodings.aliases.aliases.values(), "utf_16", "cp932"}))


@FUZZ
@given(CODECS | st.text(st.characters(codec="ascii", exclude_characters='"'), max_size=20))
def test_xml_encoding_declaration(encoding: str) -> None:
    head = f'<?xml version="1.0" encoding="{encoding}"?>\n'.encode()
    imports(head + XML_DOCS["pentabarf.xml"].split(b"\n", 1)[1])


# ---- valid exports, mutated ------------------------------------------------------------------


def slots(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key or index) in a JSON document."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in list(items):
        yield value, key
        if isinstance(child, dict | list):
            yield from slots(child)


@st.composite
def mutated_json(draw: st.DrawFn) -> bytes:
    doc = json.loads(JSON_DOCS[draw(st.sampled_from(sorted(JSON_DOCS)))])
    for _ in range(draw(st.integers(1, 4))):
        places = list(slots(doc))
        if not places:
            break
        parent, key = draw(st.sampled_from(places))
        op = draw(st.sampled_from(["delete", "replace", "replace", "copy", "empty", "garble"]))
        if op == "garble" and isinstance(parent[key], str):  # a character more, any character
            at = draw(st.integers(0, len(parent[key])))
            char = draw(st.characters() | SURROGATES)
            parent[key] = parent[key][:at] + char + parent[key][at:]
        elif op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(JSON)
        elif op == "copy" and isinstance(parent, list):  # duplicate ids, rooms, talks
            parent.insert(key, copy.deepcopy(parent[key]))
        elif op == "copy":
            parent[draw(st.text(max_size=8))] = copy.deepcopy(parent[key])
        else:
            parent[key] = type(parent[key])() if isinstance(parent[key], dict | list) else ""
    data = dumps(doc)
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


@FUZZ
@given(mutated_json())
def test_mutated_json(data: bytes) -> None:
    imports(data)


XML_TEXT = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=20) | TRICKY | TIMES
XML_ATTRIBUTES = st.sampled_from(["name", "date", "start", "id", "guid", "index"])
XML_TAGS = st.sampled_from(
    ["schedule", "conference", "day", "room", "event", "rooms", "title", "start", "persons"]
)


@st.composite
def mutated_xml(draw: st.DrawFn) -> bytes:
    root = ET.fromstring(XML_DOCS[draw(st.sampled_from(sorted(XML_DOCS)))])
    for _ in range(draw(st.integers(1, 4))):
        parents = [(p, c) for p in root.iter() for c in p]
        op = draw(st.sampled_from(["remove", "text", "attribute", "copy", "rename"]))
        if op == "rename" or not parents:
            draw(st.sampled_from([root, *(c for _, c in parents)])).tag = draw(XML_TAGS)
            continue
        parent, child = draw(st.sampled_from(parents))
        if op == "remove":
            parent.remove(child)
        elif op == "text":
            child.text = draw(XML_TEXT)
        elif op == "attribute":
            names = (
                XML_ATTRIBUTES | st.sampled_from(sorted(child.attrib))
                if child.attrib
                else XML_ATTRIBUTES
            )
            child.set(draw(names), draw(XML_TEXT))
        else:
            parent.insert(list(parent).index(child), copy.deepcopy(child))
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


@FUZZ
@given(mutated_xml())
def test_mutated_xml(data: bytes) -> None:
    imports(data)


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    """A valid export with a byte-level accident: cut short, a piece lost, bytes inserted."""
    data = VALID[draw(st.sampled_from(sorted(VALID)))]
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["truncate", "delete", "insert", "replace"]))
        if op == "truncate":
            data = data[:at]
        elif op == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 20)) :]
        elif op == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        else:
            data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at + 4 :]
    return data


@FUZZ
@given(damaged_bytes())
def test_damaged_bytes(data: bytes) -> None:
    imports(data)


# ---- valid exports, with any options and any free text ---------------------------------------


@FUZZ
@given(
    name=st.sampled_from(sorted(VALID)),
    venue_zone=st.none() | TRICKY | st.text(max_size=20) | st.timezone_keys(),
    title=st.none()
    | TRICKY
    | ANY_TEXT
    | st.sampled_from(["x.json", ".json", "/.json", "a/..json"]),
    known_rooms=st.dictionaries(
        TRICKY | ANY_TEXT,
        st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True) | TRICKY,
        max_size=4,
    ),
)
def test_options(
    name: str, venue_zone: str | None, title: str | None, known_rooms: dict[str, str]
) -> None:
    imports(VALID[name], source=name, venue_zone=venue_zone, title=title, known_rooms=known_rooms)


FREE_TEXT = (
    st.text(st.characters() | SURROGATES, max_size=40)
    | st.text(st.sampled_from("<>!&#;[]-/?x =\"'ap\n"), max_size=40)
    | TRICKY
)


@FUZZ
@given(
    title=FREE_TEXT,
    abstract=FREE_TEXT,
    speaker=FREE_TEXT,
    room=FREE_TEXT.filter(lambda t: bool(clean(t))),
)
@example(title="Keynote \ud800", abstract="", speaker="", room="Atlas")
@example(title="Keynote", abstract="", speaker="", room="\udfff")
def test_free_text(title: str, abstract: str, speaker: str, room: str) -> None:
    """Text fields take any text (the title must not be blank), kept as written but for control
    characters and outer whitespace; lone surrogates, which JSON can escape but no UTF-8 text
    holds, are refused."""
    doc = json.loads(JSON_DOCS["schedule.json"])
    conference = doc["schedule"]["conference"]
    del conference["rooms"]  # rooms come from the days
    day = conference["days"][0]
    day["rooms"] = {room: day["rooms"]["Atlas"]}
    event = day["rooms"][room][0]
    event.update(title=title, abstract=abstract, room=None, persons=[speaker])
    conference["days"] = [day]
    program = imports(dumps(doc))
    texts = (title, abstract, speaker, room)
    if any(0xD800 <= ord(c) <= 0xDFFF for text in texts for c in text):
        assert program is None
    elif clean(title):
        assert program is not None
        (session,) = program.sessions
        assert session.title == clean(title)
        assert program.rooms[0].name == clean(room)
        assert session.speakers == ((clean(speaker),) if clean(speaker) else ())
        assert session.abstract == (clean(abstract) or None)
    else:
        assert program is None  # an untitled entry is left out: nothing else to import
