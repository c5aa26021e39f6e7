"""The program model: room ids, the API shape and its round trip, re-import diffs, now and next."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from feed import keys
from feed.errors import InvalidMessage
from feed.program import (
    MAX_SLUG,
    Change,
    Conference,
    Program,
    Room,
    Session,
    assign_room_ids,
    diff,
    now_and_next,
    slugify,
    zone_changed,
)

CASABLANCA = "Africa/Casablanca"


def at(day: int, hour: int, minute: int = 0, month: int = 4) -> datetime:
    return datetime(2019, month, day, hour, minute, tzinfo=UTC)


def session(sid: str, room: str = "atlas", start: datetime | None = None, **kw: Any) -> Session:
    start = start or at(17, 9)
    end = kw.pop("end", start + timedelta(minutes=45))
    return Session(
        id=sid, title=kw.pop("title", f"Talk {sid}"), room=room, start=start, end=end, **kw
    )


def program(*sessions: Session) -> Program:
    conference = Conference("scec19", "Smart City Expo", CASABLANCA, date(2019, 4, 17), None)
    return Program(conference, (Room("atlas", "Atlas"), Room("hall-b", "Hall B")), sessions)


# ---- slugify and assign_room_ids -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Saal 1", "saal-1"),
        ("  K.1.105 (La Fontaine) ", "k-1-105-la-fontaine"),
        ("Salle Atlas — Hall B", "salle-atlas-hall-b"),
        ("Café Ünïcode", "cafe-unicode"),
        ("ﬁsh", "fish"),  # NFKD unfolds the ligature
        ("backspace / franconian.net - Bamberg", "backspace-franconian-net-bamberg"),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


@pytest.mark.parametrize("name", ["القاعة الكبرى", "会议室", "---", ""])
def test_a_name_with_nothing_left_gets_a_hash(name: str) -> None:
    expected = "room-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    assert slugify(name) == expected
    assert keys.room_id(expected) == expected


def test_a_long_name_is_cut_without_a_trailing_dash() -> None:
    slug = slugify("a" * 47 + " bcd" * 20)
    assert len(slug) <= MAX_SLUG
    assert slug == "a" * 47  # the cut fell on a separator, which is trimmed


def test_assign_makes_alike_names_unique() -> None:
    ids = assign_room_ids(["Saal 1", "SAAL 1", "saal-1", "Saal 1"], {})
    assert ids == {"Saal 1": "saal-1", "SAAL 1": "saal-1-2", "saal-1": "saal-1-3"}


def test_assign_keeps_known_ids_and_reserves_those_of_absent_rooms() -> None:
    known = {"Atlas": "main-hall", "Old room": "hall-b"}
    ids = assign_room_ids(["Hall B", "Atlas", "Main hall"], known)
    # Atlas keeps its stored id; "Hall B" may not take "hall-b", which belongs to a room that is
    # absent now but may return; "Main hall" may not take Atlas's id.
    assert ids == {"Hall B": "hall-b-2", "Atlas": "main-hall", "Main hall": "main-hall-2"}


def test_assign_refuses_a_stored_id_that_is_not_a_room_id() -> None:
    with pytest.raises(InvalidMessage, match="Atlas"):
        assign_room_ids(["Atlas"], {"Atlas": "Not An Id"})


def test_assigned_ids_are_valid_room_ids() -> None:
    names = ["Saal 1", "القاعة الكبرى", "x" * 200, "A" * 80, "Room", "room", "ROOM", "room 2"]
    ids = assign_room_ids(names, {})
    assert len(set(ids.values())) == len(ids)
    for rid in ids.values():
        assert keys.room_id(rid) == rid


# ---- the API shape ---------------------------------------------------------------------------


def test_to_json_gives_the_api_shape_sorted_by_start_room_id() -> None:
    p = program(
        session("b", "hall-b", at(17, 10)),
        session("c", "atlas", at(17, 10)),
        session("a", "hall-b", at(17, 9), speakers=("Amina",), titles={"fr": "Bonjour"}),
    )
    doc = p.to_json("UTC")
    assert set(doc) == {"conference", "rooms", "sessions"}
    assert doc["conference"] == {
        "id": "scec19",
        "title": "Smart City Expo",
        "timezone": CASABLANCA,
        "start": "2019-04-17",
        "end": None,
    }
    assert doc["rooms"] == [
        {"id": "atlas", "name": "Atlas", "names": {}},
        {"id": "hall-b", "name": "Hall B", "names": {}},
    ]
    assert [s["id"] for s in doc["sessions"]] == ["a", "c", "b"]
    assert doc["sessions"][0] == {
        "id": "a",
        "title": "Talk a",
        "room": "hall-b",
        "start": "2019-04-17T09:00:00+00:00",
        "end": "2019-04-17T09:45:00+00:00",
        "speakers": ["Amina"],
        "track": None,
        "language": None,
        "type": None,
        "subtitle": None,
        "abstract": None,
        "titles": {"fr": "Bonjour"},
        "abstracts": {},
        "tracks": {},
    }


def test_casablanca_offset_follows_ramadan() -> None:
    zone = ZoneInfo(CASABLANCA)
    # What the zone database says, checked rather than assumed: +01:00 normally, +00:00 during
    # Ramadan 2019 (5 May - 4 June).
    assert at(17, 9).astimezone(zone).utcoffset() == timedelta(hours=1)
    assert at(20, 9, month=5).astimezone(zone).utcoffset() == timedelta(0)
    p = program(session("april", start=at(17, 9)), session("ramadan", start=at(20, 9, month=5)))
    april, ramadan = p.to_json(CASABLANCA)["sessions"]
    assert april["start"] == "2019-04-17T10:00:00+01:00"
    assert ramadan["start"] == "2019-05-20T09:00:00+00:00"


def test_round_trip_in_any_zone() -> None:
    p = program(
        session("a", abstract="Text", track="AI", language="fr", type="talk", subtitle="Sub"),
        session(
            "b",
            "hall-b",
            at(20, 9, month=5),
            titles={"en": "Hi", "ar": "مرحبا"},
            abstracts={"en": "Text", "fr": "Texte"},
            tracks={"en": "AI", "fr": "IA"},
        ),
        session("zero", end=at(17, 9)),  # a zero-length entry (a deadline) is kept
    )
    p = Program(p.conference, (Room("atlas", "Atlas", {"ar": "أطلس", "fr": "Atlas"}),
                               Room("hall-b", "Hall B")), p.sessions)  # fmt: skip
    for zone in ("UTC", CASABLANCA, "Pacific/Kiritimati"):
        back = Program.from_json(p.to_json(zone))
        assert back == p
        assert back.sessions[0].start.tzinfo is UTC


def test_a_program_stored_before_language_maps_still_reads() -> None:
    doc = program(session("a")).to_json("UTC")
    for room in doc["rooms"]:
        del room["names"]
    for s in doc["sessions"]:
        del s["abstracts"], s["tracks"]
    back = Program.from_json(doc)
    assert back == program(session("a"))
    assert back.rooms[0].names == {} and back.sessions[0].tracks == {}


def test_a_zone_change_alone_retimes_nothing_printed() -> None:
    before = program(session("a", start=at(17, 9)), session("b", start=at(17, 11)))
    utc = Conference("scec19", "Smart City Expo", "UTC", date(2019, 4, 17), None)
    # the same file read in UTC: the same wall clock, an hour later as an instant
    shifted = Program(utc, before.rooms, tuple(
        replace(s, start=s.start + timedelta(hours=1), end=s.end + timedelta(hours=1))
        for s in before.sessions))  # fmt: skip
    assert zone_changed(before, shifted) == (CASABLANCA, "UTC")
    assert zone_changed(before, before) is None
    assert diff(before, shifted) == []
    late = Program(utc, before.rooms, (shifted.sessions[0], replace(
        shifted.sessions[1], start=at(17, 12, minute=30), end=at(17, 13)),))  # fmt: skip
    assert [c.kind for c in diff(before, late)] == ["retimed"]


def test_source_id_travels_only_when_asked() -> None:
    p = program(session("a", source_id="6561"))
    assert "source_id" not in p.to_json("UTC")["sessions"][0]
    assert Program.from_json(p.to_json("UTC", with_source=True)) == p
    assert Program.from_json(p.to_json("UTC")).sessions[0].source_id == ""


def test_to_json_refuses_an_unknown_zone() -> None:
    with pytest.raises(InvalidMessage, match="Mars/Olympus"):
        program(session("a")).to_json("Mars/Olympus")


def _broken(path: str, value: object) -> dict[str, Any]:
    doc = copy.deepcopy(program(session("a"), session("b", "hall-b")).to_json("UTC"))
    *parents, last = path.split(".")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is KeyError:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("conference", None, "conference"),
        ("conference.id", "", "conference.id"),
        ("conference.timezone", "Nowhere/Town", "Nowhere/Town"),
        ("conference.start", "17/04/2019", "conference.start"),
        ("rooms", {}, "rooms"),
        ("rooms.0.id", "Atlas Hall", "rooms[0].id"),
        ("rooms.1.id", "atlas", "rooms[1].id"),
        ("rooms.0.name", None, "rooms[0].name"),
        ("sessions.0", "a", "sessions[0]"),
        ("sessions.1.id", "a", "sessions[1].id"),
        ("sessions.0.title", KeyError, "sessions[0].title"),
        ("sessions.0.room", "nowhere", "sessions[0].room"),
        ("sessions.0.start", "2019-04-17T09:00:00", "sessions[0].start"),
        ("sessions.0.start", "yesterday", "sessions[0].start"),
        ("sessions.0.end", "2019-04-17T08:00:00+00:00", "sessions[0].end"),
        ("sessions.0.speakers", [1], "sessions[0].speakers[0]"),
        ("sessions.0.track", 3, "sessions[0].track"),
        ("sessions.0.titles", {"en": None}, "sessions[0].titles.en"),
    ],
)
def test_from_json_names_the_bad_field(path: str, value: object, named: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        Program.from_json(_broken(path, value))
    assert named in info.value.message


def test_from_json_refuses_what_is_not_an_object() -> None:
    with pytest.raises(InvalidMessage, match="program"):
        Program.from_json([])


# ---- diff ------------------------------------------------------------------------------------


def test_a_first_import_is_not_news() -> None:
    assert diff(None, program(session("a"))) == []


def test_the_same_program_has_no_changes() -> None:
    p = program(session("a"), session("b", "hall-b"))
    assert diff(p, Program.from_json(p.to_json(CASABLANCA))) == []


def test_every_kind_of_change() -> None:
    old = program(
        session("kept"),
        session("moved", "atlas", at(17, 11)),
        session("both", "atlas", at(17, 12), title="Old title"),
        session("gone", "hall-b", at(17, 13)),
    )
    new = program(
        session("kept"),
        session("moved", "hall-b", at(17, 11)),
        session("both", "hall-b", at(17, 12, 30), title="New title"),
        session("fresh", "atlas", at(17, 8)),
    )
    changes = diff(old, new)
    assert [(c.kind, c.session) for c in changes] == [
        ("new", "fresh"),
        ("moved", "moved"),
        ("moved", "both"),
        ("retimed", "both"),
        ("retitled", "both"),
        ("cancelled", "gone"),
    ]
    assert changes[0] == Change("new", "fresh", "atlas", None, "Talk fresh")
    assert changes[2] == Change("moved", "both", "hall-b", "atlas", "New title")
    assert changes[3].detail == {
        "old_start": "2019-04-17T12:00:00+00:00",
        "old_end": "2019-04-17T12:45:00+00:00",
        "new_start": "2019-04-17T12:30:00+00:00",
        "new_end": "2019-04-17T13:15:00+00:00",
    }
    assert changes[4].detail == {"old": "Old title", "new": "New title"}
    assert changes[5] == Change("cancelled", "gone", "hall-b", None, "Talk gone")
    assert diff(old, new) == changes  # deterministic


def test_a_new_end_alone_is_a_retime() -> None:
    old = program(session("a"))
    new = program(session("a", end=at(17, 10)))
    assert [c.kind for c in diff(old, new)] == ["retimed"]


# ---- now and next ----------------------------------------------------------------------------


def room_sessions() -> list[dict[str, Any]]:
    p = program(
        session("s1", start=at(17, 9), end=at(17, 10)),
        session("s2", start=at(17, 10), end=at(17, 11)),
        session("s3", start=at(17, 11, 30), end=at(17, 12)),
    )
    return list(p.to_json(CASABLANCA)["sessions"])


def ids(pair: tuple[dict[str, Any] | None, dict[str, Any] | None]) -> tuple[str | None, ...]:
    return tuple(s["id"] if s else None for s in pair)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(17, 8), (None, "s1")),
        (at(17, 9), ("s1", "s2")),  # start is inclusive
        (at(17, 10), ("s2", "s3")),  # end is exclusive
        (at(17, 11, 10), (None, "s3")),  # a gap
        (at(17, 12), (None, None)),
    ],
)
def test_now_and_next_on_time(now: datetime, expected: tuple[str | None, ...]) -> None:
    assert ids(now_and_next(room_sessions(), now, 0)) == expected


def test_a_delay_keeps_an_ended_session_on_and_shifts_the_next() -> None:
    sessions = room_sessions()
    current, upcoming = now_and_next(sessions, at(17, 10, 5), 10)
    assert current is not None and upcoming is not None
    assert (current["id"], upcoming["id"]) == ("s1", "s2")
    # shifted, in the offset the sessions were given in
    assert current["end"] == "2019-04-17T11:10:00+01:00"
    assert upcoming["start"] == "2019-04-17T11:10:00+01:00"
    assert current["delay"] == upcoming["delay"] == 10
    assert sessions[0]["end"] == "2019-04-17T11:00:00+01:00"  # the input is left alone


def test_now_and_next_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        now_and_next(room_sessions(), datetime(2019, 4, 17, 9), 0)
