"""Real exports are dirty: what an import repairs, what it skips, what it reports, and what it
keeps exactly as the source wrote it. One small file per kind of dirt, in fixtures/dirty/."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feed.errors import InvalidMessage
from feed.program import diff
from publisher import importers
from publisher.importers import read

DIRTY = Path(__file__).parent / "fixtures" / "dirty"


def load(name: str, **options: object) -> importers.Imported:
    return read((DIRTY / name).read_bytes(), source=name, **options)  # type: ignore[arg-type]


def notes(items: list[importers.Note]) -> list[str]:
    return [str(n) for n in items]


def test_breaks_without_code_or_id_get_ids_from_their_room_start_and_title() -> None:
    first = load("widget-breaks.json")
    p, report = first.program, first.report
    titles = {s.title: s for s in p.sessions}
    assert set(titles) == {"Registration", "Opening", "Coffee break", "Lunch"}
    breaks = [s for s in p.sessions if s.type == "break"]
    assert len(breaks) == 4  # both coffee breaks: same title and time, other rooms
    assert len({s.id for s in breaks}) == 4
    assert all(s.id.startswith("widget-breaks-") for s in breaks)
    assert titles["Opening"].id == "TALK01"
    # the blocker without a room and the untitled break are left out, as ever, unreported;
    # the talk without a start cannot be placed: skipped, and said
    assert report.repaired == 4 and report.skipped == 1
    assert notes(report.skips) == ["talks[7]: no start; left out"]
    assert all("no guid and no id: given the id widget-breaks-" in str(n) for n in report.repairs)
    assert report.repairs[0].where == "talks[0]"
    # the same file again: the same ids
    assert load("widget-breaks.json").program == p
    assert diff(p, load("widget-breaks.json").program) == []


def test_a_derived_id_follows_the_entry_not_its_place_in_the_file() -> None:
    doc = json.loads((DIRTY / "widget-breaks.json").read_bytes())
    before = {s.title + s.room: s.id for s in load("widget-breaks.json").program.sessions}
    doc["talks"].reverse()
    doc["talks"].insert(0, {"title": "Early coffee", "start": "2019-04-17T08:00:00+01:00",
                            "end": "2019-04-17T08:30:00+01:00", "room": 2})  # fmt: skip
    p = read(json.dumps(doc).encode(), source="widget-breaks.json").program
    after = {s.title + s.room: s.id for s in p.sessions}
    assert {k: after[k] for k in before} == before


def test_a_merged_c3voc_file_imports_whole() -> None:
    imported = load("merged-c3voc.json")
    p, report = imported.program, imported.report
    assert [(r.id, r.name) for r in p.rooms] == [
        ("saal-1", "Saal 1"),
        ("saal-granville", "Saal Granville"),
        ("workshop-tent", "Workshop Tent"),  # the list forgot it: added after the listed ones
    ]
    by_title = {s.title: s for s in p.sessions}
    # zero length: kept as it is
    deadline = by_title["Deadline: submissions close"]
    assert deadline.start == deadline.end == datetime(2023, 12, 27, 11, tzinfo=UTC)
    # a guid used three times: the first keeps it, the others get the next free suffix (the
    # file itself uses "aaaa-0001-2")
    assert by_title["Opening"].id == "aaaa-0001"
    assert by_title["Copied from another instance"].id == "aaaa-0001-3"
    assert by_title["Third use of one guid"].id == "aaaa-0001-4"
    assert by_title["A guid that looks like a repair"].id == "aaaa-0001-2"
    # the structure says where an event is, whatever its `room` field says
    assert by_title["Room named two ways"].room == "saal-granville"
    assert by_title["In a room the list forgot"].room == "workshop-tent"
    assert (report.repaired, report.skipped) == (4, 2)
    day = "schedule.conference.days[0].rooms"
    assert notes(report.repairs) == [
        f"{day}[\"Saal Granville\"][0]: its room field says 'Granville': kept in"
        " 'Saal Granville', where it is listed",
        f"{day}[\"Workshop Tent\"][0]: room 'Workshop Tent' is not in the conference's room"
        " list: added to it",
        f"{day}[\"Saal 1\"][2]: duplicate session id 'aaaa-0001', also used at"
        f' {day}["Saal 1"][0]: given aaaa-0001-3',
        f"{day}[\"Saal Granville\"][1]: duplicate session id 'aaaa-0001', also used at"
        f' {day}["Saal 1"][0]: given aaaa-0001-4',
    ]
    assert notes(report.skips) == [
        f"{day}[\"Workshop Tent\"][1]: duration: 'soon' is not a duration (HH:MM); left out",
        f'{day}["Workshop Tent"][2]: no start; left out',
    ]
    assert load("merged-c3voc.json").program == p  # deterministic


@pytest.mark.parametrize("name", ["widget-breaks.json", "merged-c3voc.json"])
def test_strict_refuses_what_it_would_repair_or_skip(name: str) -> None:
    first = load(name).report
    with pytest.raises(InvalidMessage) as info:
        load(name, strict=True)
    assert info.value.message.startswith(f"{name}: ")
    assert any(n.where in info.value.message for n in first.repairs + first.skips)


def test_xml_entries_are_reported_by_their_line() -> None:
    xml = (DIRTY / "texts.xml").read_text(encoding="utf-8")
    xml = xml.replace('<event guid="t-tag" id="3">', "<event>").replace(
        "<room>Hall</room>", "<room>Main hall</room>", 1
    )
    report = read(xml.encode(), source="texts.xml").report
    assert notes(report.repairs) == [
        'line 11: schedule/day[1]/room[@name="Hall"]/event[@id="1"]: its <room> says'
        " 'Main hall': kept in 'Hall', where it is listed",
        'line 25: schedule/day[1]/room[@name="Hall"]/event[3]: no guid and no id: given the id'
        " texts-" + report.repairs[1].what.rsplit("texts-", 1)[1],
    ]


def test_a_file_with_no_usable_session_is_still_refused() -> None:
    doc = json.loads((DIRTY / "widget-breaks.json").read_bytes())
    doc["talks"] = [t for t in doc["talks"] if t.get("room") is None or not t.get("title")]
    with pytest.raises(InvalidMessage, match="no sessions found"):
        read(json.dumps(doc).encode(), source="w.json")
    doc["talks"] = [{"title": "x", "room": 1}, {"title": "y", "room": 2, "start": "never"}]
    with pytest.raises(InvalidMessage) as info:
        read(json.dumps(doc).encode(), source="w.json")
    assert info.value.message == (
        "w.json: none of its 2 sessions can be used; the first: talks[0]: no start; left out"
    )


# ---- texts -----------------------------------------------------------------------------------


def test_abstracts_are_served_as_written() -> None:
    p = load("texts.xml").program
    abstracts = {s.id: s.abstract for s in p.sessions}
    assert abstracts["t-link"] == "Siehe <https://example.org/x.html>"
    assert abstracts["t-query"] == "See https://example.org/q?a=b&param=1&region=eu for the data."
    assert abstracts["t-tag"] == "Use <video> for video.\n\n* one\n* two"


def test_control_characters_are_removed_and_the_rest_kept() -> None:
    (c1,) = [s for s in load("texts.xml").program.sessions if s.id == "t-c1"]
    assert c1.title == "C1 next line31m and DEL gone\ttab kept"
    (s,) = load("texts.json").program.sessions
    assert s.title == "Bell , escape [31mred[0m, null  and a\nline"
    assert s.abstract == "Line one\nLine two\twith a tab"


def test_a_crafted_abstract_is_kept_as_text_and_capped() -> None:
    doc = json.loads((DIRTY / "texts.json").read_bytes())
    event = doc["schedule"]["conference"]["days"][0]["rooms"]["Hall"][0]
    event["abstract"] = "<a " * 8000  # what made html.parser take seconds
    imported = read(json.dumps(doc).encode(), source="t.json")
    (s,) = imported.program.sessions
    assert s.abstract == ("<a " * 8000)[: importers.MAX_TEXT]  # text, never parsed
    event["abstract"] = "x" * (importers.MAX_TEXT + 10)
    event["title"] = "T" * (importers.MAX_LINE + 1)
    imported = read(json.dumps(doc).encode(), source="t.json")
    (s,) = imported.program.sessions
    assert len(s.abstract or "") == importers.MAX_TEXT and len(s.title) == importers.MAX_LINE
    assert [n.what for n in imported.report.repairs] == [
        f"{importers.MAX_LINE + 1} characters: cut to the first {importers.MAX_LINE}",
        f"{importers.MAX_TEXT + 10} characters: cut to the first {importers.MAX_TEXT}",
    ]


# ---- zones -----------------------------------------------------------------------------------


def test_no_zone_anywhere_is_refused_and_says_how_to_give_one() -> None:
    xml = (
        (DIRTY / "texts.xml")
        .read_bytes()
        .replace(b"<time_zone_name>Europe/Berlin</time_zone_name>", b"")
    )
    with pytest.raises(InvalidMessage) as info:
        read(xml, source="texts.xml")
    assert info.value.message.startswith("texts.xml: the file names no time zone")
    assert "--zone" in info.value.message and "FEED_VENUE_ZONE" in info.value.message
    p = read(xml, source="texts.xml", venue_zone="Africa/Casablanca").program
    assert p.conference.timezone == "Africa/Casablanca"


def test_zone_names_are_served_as_given() -> None:
    p = load("texts.xml", venue_zone="US/Eastern").program
    assert p.conference.timezone == "US/Eastern"
    assert p.to_json("US/Eastern")["conference"]["timezone"] == "US/Eastern"


def test_a_reimport_in_another_zone_changes_no_printed_time() -> None:
    xml = (
        (DIRTY / "texts.xml")
        .read_bytes()
        .replace(b"<time_zone_name>Europe/Berlin</time_zone_name>", b"")
    )
    wrong = read(xml, source="texts.xml", venue_zone="UTC").program
    right = read(xml, source="texts.xml", venue_zone="Europe/Berlin").program
    assert [s.id for s in wrong.sessions] == [s.id for s in right.sessions]
    assert all(a.start - b.start == timedelta(hours=2) for a, b in zip(wrong.sessions,
               right.sessions, strict=True))  # fmt: skip
    assert diff(wrong, right) == []  # the printed times are the same: nobody is told of a change
    moved = read(xml.replace(b"<start>10:00</start>", b"<start>10:15</start>"),
                 source="texts.xml", venue_zone="Europe/Berlin").program  # fmt: skip
    assert [(c.kind, c.session) for c in diff(wrong, moved)] == [("retimed", "t-link")]
