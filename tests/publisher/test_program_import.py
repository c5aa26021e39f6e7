"""Importing a program into a real Redis: what is stored, what is published, what is refused."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from feed import reducer
from feed.embedded import RedisProcess
from feed.errors import InvalidMessage
from feed.protocol import Position
from publisher import Publisher

FIXTURE = Path(__file__).resolve().parents[1] / "web" / "fixtures" / "expo.json"
DEMO = Path(__file__).resolve().parents[2] / "publisher" / "demo" / "smart-city-expo-2019.json"


def program(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def expo() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(FIXTURE.read_bytes())
    return doc


def events_of(days: list[dict[str, Any]], room: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = days[0]["rooms"][room]
    return found


async def published(pub: Publisher, channel: str, after: int = 0) -> list[Any]:
    synced = await pub.bus.sync(channel)
    history = await pub.bus.sync(channel, after=Position(synced.epoch, after))
    return history.events


async def test_a_first_import_stores_the_program_and_fills_each_room(redis: RedisProcess) -> None:
    async with Publisher(redis.url) as pub:
        result = await pub.import_program(FIXTURE.read_bytes(), source="expo.json")
        assert (result["rooms"], result["sessions"], result["changes"]) == (2, 4, [])
        raw, etag, rooms = await pub.bus.program()
        assert etag == result["etag"] and rooms == {"Atlas": "atlas", "Anfa": "anfa"}
        stored = orjson.loads(raw or b"")
        assert stored["conference"]["timezone"] == "Africa/Casablanca"
        assert [s["start"] for s in stored["sessions"]][:1] == ["2019-04-17T09:30:00+01:00"]
        anfa = await pub.bus.sync("room:anfa")
        assert anfa.state["name"] == "Anfa"
        assert [s["title"] for s in anfa.state["sessions"]] == [
            "Open data for mobility",
            "المدن الذكية والمواطن",
        ]
        # The talk at 23:30 runs past midnight: it ends on the next calendar date.
        assert anfa.state["sessions"][1]["end"] == "2019-04-18T00:30:00+01:00"
        venue = await pub.bus.sync("venue")
        schedule = venue.state["schedule"]
        assert schedule is not None and schedule["etag"] == etag


async def test_importing_the_same_program_again_publishes_nothing(redis: RedisProcess) -> None:
    async with Publisher(redis.url) as pub:
        await pub.import_program(FIXTURE.read_bytes(), source="expo.json")
        seqs = [(await pub.bus.sync(ch)).seq for ch in ("room:atlas", "room:anfa", "venue")]
        again = await pub.import_program(FIXTURE.read_bytes(), source="expo.json")
        assert again["changes"] == []
        assert [(await pub.bus.sync(ch)).seq for ch in ("room:atlas", "room:anfa", "venue")] == seqs


async def test_a_reimport_publishes_what_changed_where_it_changed(redis: RedisProcess) -> None:
    doc = expo()
    async with Publisher(redis.url) as pub:
        await pub.import_program(program(doc), source="expo.json")
        before = {ch: (await pub.bus.sync(ch)).seq for ch in ("room:atlas", "room:anfa", "venue")}
        days = doc["schedule"]["conference"]["days"]
        atlas, anfa = events_of(days, "Atlas"), events_of(days, "Anfa")
        moved = anfa.pop(0)  # "Open data for mobility" moves from Anfa to Atlas, 30 min later
        moved.update(room="Atlas", date="2019-04-17T12:00:00+01:00", start="12:00")
        atlas.append(moved)
        atlas[0]["title"] = "Ouverture officielle de la 4e édition"  # retitled
        atlas.pop(1)  # cancelled
        extra = copy.deepcopy(anfa[0])
        extra.update(id=5, guid="7f6b1c0e-0000-4000-8000-000000000005", title="Nouvelle session")
        extra.update(date="2019-04-17T15:00:00+01:00", start="15:00")
        anfa.append(extra)
        result = await pub.import_program(program(doc), source="expo.json")

        kinds = sorted((c["kind"], c["title"]) for c in result["changes"])
        assert kinds == [
            ("cancelled", "L'IA au service des citoyens"),
            ("moved", "Open data for mobility"),
            ("new", "Nouvelle session"),
            ("retimed", "Open data for mobility"),
            ("retitled", "Ouverture officielle de la 4e édition"),
        ]
        for channel, expected in (
            ("room:atlas", {"moved", "retimed", "retitled", "cancelled"}),
            ("room:anfa", {"moved", "new"}),  # the move is news in both rooms
        ):
            (event,) = await published(pub, channel, before[channel])
            assert event.kind == "program"
            assert {c["kind"] for c in event.data["changes"]} == expected, channel
        (summary,) = await published(pub, "venue", before["venue"])
        assert summary.kind == "schedule" and summary.data["changes_total"] == 5
        venue = await pub.bus.sync("venue")
        assert len(venue.state["changes"]) == 5


async def test_a_broken_file_changes_nothing(redis: RedisProcess) -> None:
    async with Publisher(redis.url) as pub:
        await pub.import_program(FIXTURE.read_bytes(), source="expo.json")
        stored = await pub.bus.program()
        doc = expo()
        doc["schedule"]["conference"]["days"][0]["rooms"]["Atlas"][0]["start"] = "25:99"
        del doc["schedule"]["conference"]["days"][0]["rooms"]["Atlas"][0]["date"]
        with pytest.raises(InvalidMessage) as info:
            await pub.import_program(program(doc), source="expo-broken.json", strict=True)
        assert info.value.message.startswith("expo-broken.json")
        with pytest.raises(InvalidMessage, match="empty"):
            await pub.import_program(b"  ", source="nothing.xml")
        with pytest.raises(InvalidMessage, match="names no time zone"):
            await pub.import_program(b"<schedule><conference><title>t</title></conference>"
                                     b"</schedule>", source="t.xml")  # fmt: skip
        assert await pub.bus.program() == stored
        # without --strict the one unusable session is left out, and said
        done = await pub.import_program(program(doc), source="expo-broken.json")
        assert done["sessions"] == 3 and [c["kind"] for c in done["changes"]] == ["cancelled"]
        assert done["report"]["skipped"] == 1 and done["report"]["repaired"] == 0
        (skip,) = done["report"]["skips"]
        assert skip["where"] == 'schedule.conference.days[0].rooms["Atlas"][0]'
        assert skip["what"] == "start: '25:99' is not a time of day (HH:MM); left out"


async def test_every_language_of_the_rooms_reaches_their_channels(redis: RedisProcess) -> None:
    async with Publisher(redis.url) as pub:
        await pub.import_program(DEMO.read_bytes(), source=DEMO.name)
        atlas = (await pub.bus.sync("room:atlas")).state
        assert atlas["name"] == "Atlas"
        assert atlas["names"] == {"fr": "Atlas", "en": "Atlas", "ar": "أطلس"}
        keynote = next(s for s in atlas["sessions"] if s["id"] == "SCE001")
        assert keynote["tracks"]["ar"] == "الذكاء الاصطناعي والخدمات العمومية"
        assert keynote["track"] == "AI and public services"
        raw, _, _ = await pub.bus.program()
        stored = orjson.loads(raw or b"")
        assert stored["rooms"][0]["names"]["ar"] == "أطلس"
        opening = next(s for s in stored["sessions"] if s["id"] == "SCE001")
        assert set(opening["abstracts"]) == {"fr", "en"} and opening["abstract"].startswith("All")


async def test_a_zone_given_late_is_one_line_not_a_flood(redis: RedisProcess) -> None:
    doc = expo()
    del doc["schedule"]["conference"]["time_zone_name"]
    for day in doc["schedule"]["conference"]["days"]:
        for events in day["rooms"].values():
            for event in events:  # local times only: the zone decides the instants
                event["date"] = event["date"][:19]
    async with Publisher(redis.url) as pub:
        first = await pub.import_program(program(doc), source="x.json", venue_zone="UTC")
        assert first["zone_changed"] is None
        seq = (await pub.bus.sync("venue")).seq
        again = await pub.import_program(program(doc), source="x.json",
                                         venue_zone="Africa/Casablanca")  # fmt: skip
        assert again["zone_changed"] == {"old": "UTC", "new": "Africa/Casablanca"}
        assert again["changes"] == []  # no session's printed time changed
        venue = await pub.bus.sync("venue")
        assert venue.seq == seq + 1  # the new program's instants are published
        assert venue.state["changes"] == []
        anfa = (await pub.bus.sync("room:anfa")).state
        assert anfa["sessions"][0]["start"].endswith("+01:00")


async def test_room_ids_stay_when_a_room_is_renamed_back_and_forth(redis: RedisProcess) -> None:
    doc = expo()
    async with Publisher(redis.url) as pub:
        await pub.import_program(program(doc), source="expo.json")
        conference = doc["schedule"]["conference"]
        conference["rooms"].append({"name": "ATLAS"})  # slugifies like "Atlas"
        atlas_events = conference["days"][0]["rooms"]["Atlas"]
        conference["days"][0]["rooms"]["ATLAS"] = [dict(atlas_events.pop(), room="ATLAS")]
        result = await pub.import_program(program(doc), source="expo.json")
        _, _, rooms = await pub.bus.program()
    assert rooms["Atlas"] == "atlas" and rooms["ATLAS"] == "atlas-2"
    assert result["rooms"] == 3


async def test_the_snapshot_shows_now_and_next_with_the_delay(redis: RedisProcess) -> None:
    now = datetime.now(UTC).replace(microsecond=0)

    def at(minutes: int) -> str:
        return (now + timedelta(minutes=minutes)).isoformat()

    doc = expo()
    atlas = doc["schedule"]["conference"]["days"][0]["rooms"]["Atlas"]
    atlas[0].update(date=at(-40), duration="00:35")  # ended 5 minutes ago...
    atlas[1].update(date=at(5), duration="00:30")  # ...and the next starts in 5
    async with Publisher(redis.url) as pub:
        await pub.import_program(program(doc), source="expo.json")
        state = (await pub.bus.sync("room:atlas")).state
        view = reducer.room_view(state, int(now.timestamp() * 1000))
        assert view["now"] is None
        assert view["next"] is not None and view["next"]["id"] == atlas[1]["guid"]
        await pub.status("atlas", "delayed", delay=10)  # running 10 minutes late
        state = (await pub.bus.sync("room:atlas")).state
    view = reducer.room_view(state, int(now.timestamp() * 1000))
    assert view["now"] is not None and view["next"] is not None
    assert view["now"]["id"] == atlas[0]["guid"] and view["now"]["delay"] == 10
    assert datetime.fromisoformat(view["next"]["start"]) == datetime.fromisoformat(at(15))


async def test_a_room_too_big_for_one_event_is_named_and_nothing_is_published(
    redis: RedisProcess,
) -> None:
    doc = expo()
    anfa = doc["schedule"]["conference"]["days"][0]["rooms"]["Anfa"]
    template = anfa[0]
    for i in range(1200):  # far more sessions than one event holds
        anfa.append({**template, "id": 1000 + i, "guid": f"g-{i}", "title": f"Session {i} " * 8})
    async with Publisher(redis.url) as pub:
        with pytest.raises(InvalidMessage, match="room room:anfa"):
            await pub.import_program(program(doc), source="expo.json")
        assert (await pub.bus.sync("room:atlas")).seq == 0
        assert await pub.bus.program() == (None, None, {})


async def test_an_edit_that_narrows_an_announcement_and_a_partial_retraction(
    redis: RedisProcess,
) -> None:
    async with Publisher(redis.url) as pub:
        await pub.announce("Salles pleines", rooms=["p1", "p2"], announcement_id="full")
        assert await pub.retract("full", rooms=["p1"]) == ["room:p1"]
        # p2 still has it, and a later retraction without rooms finds it there.
        assert await pub.retract("full") == ["room:p2"]
        with pytest.raises(Exception, match="no announcement"):
            await pub.retract("full")
