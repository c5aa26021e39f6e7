"""GET /api/calendar.ics?session=...: a phone's favourites or "my day" for its calendar (issue 17
§5). Each event is the very one of its room's calendar (same UID and SEQUENCE), so adding it
again or adding the room's calendar updates it instead of duplicating it; a re-import that moves
a favourite updates it in place; bad requests get a JSON error naming the field."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from feed import calendar
from feed.embedded import RedisProcess
from publisher import Publisher
from tests.conftest import FeedServer
from tests.web import phone_program
from tests.web.test_calendar import events

Servers = Callable[..., FeedServer]


async def get(server: FeedServer, path: str, **params: Any) -> tuple[int, str, CIMultiDict[str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}{path}", params=params) as answer,
    ):
        return answer.status, await answer.text(), CIMultiDict(answer.headers)


def sessions(*ids: str, name: str | None = None) -> str:
    query = "&".join(f"session={i}" for i in ids) + (f"&name={name}" if name else "")
    return f"/api/calendar.ics?{query}"


async def test_favourites_are_the_room_calendars_own_events(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    doc = phone_program.today()
    async with Publisher(redis.url) as pub:
        await pub.import_program(orjson.dumps(doc), source="today.json", title="Expo")
        status, body, headers = await get(server, sessions("SCE014", "SCE015", "SCE014"))
        assert status == 200 and headers["Content-Type"].startswith("text/calendar")
        mine = events(body)
        assert set(mine) == {"SCE014@expo", "SCE015@expo"}  # the duplicate counted once
        assert "X-WR-CALNAME:Expo · Favourites" in body
        _, atlas, _ = await get(server, "/api/rooms/atlas/calendar.ics")
        assert mine["SCE014@expo"] == events(atlas)["SCE014@expo"]  # the very same event
        assert mine["SCE015@expo"]["LOCATION"] == "Anfa"
        # Not changed: 304 on its ETag.
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                server.url + sessions("SCE014", "SCE015"),
                headers={"If-None-Match": headers["ETag"]},
            ) as again,
        ):
            assert again.status == 304

        # A re-import moves SCE014 to Oasis: same UID, a higher SEQUENCE, the new room.
        await pub.import_program(
            orjson.dumps(phone_program.moved(doc, "SCE014", 4)), source="today.json", title="Expo"
        )
        _, body, _ = await get(server, sessions("SCE014"), name="Ma journée")
        moved = events(body)["SCE014@expo"]
        assert moved["LOCATION"] == "Oasis"
        assert int(moved["SEQUENCE"]) == int(mine["SCE014@expo"]["SEQUENCE"]) + 1
        assert "Expo · Ma journée" in body


async def test_bad_requests_say_which_field(redis: RedisProcess, feed_server: Servers) -> None:
    server = feed_server(redis.url)
    status, body, _ = await get(server, sessions("SCE014"))
    assert status == 404 and "no program" in body  # nothing imported yet
    async with Publisher(redis.url) as pub:
        await pub.import_program(orjson.dumps(phone_program.today()), source="t.json", title="E")
    cases = [
        ("/api/calendar.ics", 422, "session"),
        (sessions("SCE014", "nope"), 404, "session"),
        (sessions("x" * 201), 422, "session"),
        (sessions(*[f"s{i}" for i in range(201)]), 413, "session"),
        (sessions("SCE014", name="%E2%80%8B"), 422, "name"),  # a zero-width space alone
    ]
    for path, code, field in cases:
        status, body, _ = await get(server, path)
        assert status == code, (path, body)
        assert orjson.loads(body)["error"]["field"] == field


def test_render_sessions_keeps_cancelled_ones() -> None:
    session = {"id": "a", "title": "A", "room": "r", "start": "2026-06-01T10:00:00+01:00",
               "end": "2026-06-01T11:00:00+01:00"}  # fmt: skip
    ledger = calendar.advance({}, [session], 0)
    ledger |= calendar.advance(ledger, [], 1000)  # it left the program
    body = calendar.render_sessions({"id": "c", "title": "C"}, {}, ledger, ["a", "b"], "Mine")
    event = events(body)["a@c"]
    assert event["STATUS"] == "CANCELLED" and event["SEQUENCE"] == "1"
    assert event["LOCATION"] == "r"  # a room no longer in the program: its id


async def test_the_program_goes_compressed_to_whoever_accepts_it(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(orjson.dumps(phone_program.large(300)), source="large.json")
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.get(
            f"{server.url}/api/schedule", headers={"Accept-Encoding": "identity"}
        ) as plain:
            body = await plain.read()
            assert plain.headers.get("Content-Encoding") is None
        async with http.get(
            f"{server.url}/api/schedule", headers={"Accept-Encoding": "gzip"}
        ) as packed:
            assert packed.headers["Content-Encoding"] == "gzip"
            assert packed.headers["ETag"] == plain.headers["ETag"]
            assert "Accept-Encoding" in packed.headers["Vary"]
            assert gzip.decompress(await packed.read()) == body
            assert packed.content_length is not None and packed.content_length < len(body) / 3
