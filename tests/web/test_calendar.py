"""GET /api/rooms/{room}/calendar.ics: a room's sessions for calendar apps, kept up to date."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from feed import calendar
from feed.embedded import RedisProcess
from publisher import Publisher
from tests.conftest import FeedServer

Servers = Callable[..., FeedServer]
EXPO = Path(__file__).resolve().parent / "fixtures" / "expo.json"


def events(ics: str) -> dict[str, dict[str, str]]:
    """The VEVENTs of a calendar by UID, each as {property: value}, lines unfolded."""
    assert ics.startswith("BEGIN:VCALENDAR\r\n") and ics.endswith("END:VCALENDAR\r\n")
    lines = ics.replace("\r\n ", "").split("\r\n")
    assert all(len(line.encode()) <= 75 for line in ics.split("\r\n"))
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in lines:
        if line == "BEGIN:VEVENT":
            current = {}
        elif line == "END:VEVENT" and current is not None:
            found[current["UID"]] = current
            current = None
        elif current is not None:
            name, _, value = line.partition(":")
            current[name] = value
    return found


async def fetch(server: FeedServer, room: str, etag: str | None = None) -> tuple[int, str, str]:
    headers = {"If-None-Match": etag} if etag else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/api/rooms/{room}/calendar.ics", headers=headers) as answer,
    ):
        return answer.status, await answer.text(), answer.headers.get("ETag", "")


def retime_and_drop(doc: dict[str, Any]) -> dict[str, Any]:
    """The expo program with Atlas's first talk an hour later and its second one gone."""
    changed = copy.deepcopy(doc)
    talks = changed["schedule"]["conference"]["days"][0]["rooms"]["Atlas"]
    talks[0]["date"] = talks[0]["date"].replace("T09:", "T10:", 1).replace("T08:", "T09:", 1)
    talks[0]["start"] = f"{int(talks[0]['start'][:2]) + 1:02d}{talks[0]['start'][2:]}"
    del talks[1]
    return changed


async def test_the_calendar_follows_the_program(redis: RedisProcess, feed_server: Servers) -> None:
    server = feed_server(redis.url)
    status, body, _ = await fetch(server, "atlas")
    assert status == 404 and orjson.loads(body)["error"]["code"] == "not_found"
    doc = orjson.loads(EXPO.read_bytes())
    async with Publisher(redis.url) as pub:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
        status, first, etag = await fetch(server, "atlas")
        assert status == 200
        before = events(first)
        assert before and all(e["STATUS"] == "CONFIRMED" and e["SEQUENCE"] == "0"
                              for e in before.values())  # fmt: skip
        assert all(e["LOCATION"] == "Atlas" for e in before.values())
        assert (await fetch(server, "atlas", etag))[0] == 304
        await pub.import_program(orjson.dumps(retime_and_drop(doc)), source="expo.json")
        status, second, _ = await fetch(server, "atlas")
    after = events(second)
    assert after.keys() == before.keys()  # the dropped talk stays, struck out
    changed = {uid: e for uid, e in after.items() if e != before[uid]}
    statuses = sorted((e["STATUS"], e["SEQUENCE"]) for e in changed.values())
    assert statuses == [("CANCELLED", "1"), ("CONFIRMED", "1")]
    moved = next(e for e in changed.values() if e["STATUS"] == "CONFIRMED")
    uid = next(u for u, e in changed.items() if e is moved)
    assert moved["DTSTART"] > before[uid]["DTSTART"]
    status, body, _ = await fetch(server, "nowhere")
    assert status == 404 and "nowhere" in orjson.loads(body)["error"]["message"]


def test_text_is_escaped_and_long_lines_folded_between_characters() -> None:
    session = {
        "id": "s1", "title": "Villes, données; et\nIA — " + "é" * 80, "room": "atlas",
        "start": "2019-04-17T09:00:00+01:00", "end": "2019-04-17T10:00:00+01:00",
        "speakers": ["Ada", "Ibn Battuta"], "abstract": None, "subtitle": None,
        "track": "Data", "language": "fr",
    }  # fmt: skip
    ledger = calendar.advance({}, [session], 1_555_000_000_000)
    ics = calendar.render({"id": "sce", "title": "Expo"}, {"id": "atlas", "name": "Atlas"}, ledger)
    (event,) = events(ics).values()
    assert event["SUMMARY"].startswith("Villes\\, données\\; et\\nIA — éé")
    assert event["DTSTART"] == "20190417T080000Z" and event["DTEND"] == "20190417T090000Z"
    assert event["DESCRIPTION"] == "Ada\\, Ibn Battuta"
    ics.encode("utf-8")  # folding never cut a character in two
    again = calendar.advance(ledger, [session], 1_555_000_100_000)
    assert again == {}  # nothing changed: nothing to write, SEQUENCE stays
    back = calendar.advance({**ledger, **calendar.advance(ledger, [], 1)}, [session], 2)
    assert back["s1"]["sequence"] == 2 and back["s1"]["cancelled"] is False
