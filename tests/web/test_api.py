"""The HTTP API against a real server and Redis: roles, bad bodies, idempotency, rate limits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from feed.bus import Bus
from feed.embedded import RedisProcess
from publisher import tokens
from tests.conftest import FeedServer, connect

Servers = Callable[..., FeedServer]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "expo.json"


@dataclass
class Api:
    server: FeedServer
    http: aiohttp.ClientSession
    tokens: dict[str, str]

    async def call(
        self,
        method: str,
        path: str,
        *,
        who: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        sent = dict(headers or {})
        if who is not None:
            sent["Authorization"] = f"Bearer {self.tokens.get(who, who)}"
        data = raw
        if body is not None:
            data = orjson.dumps(body)
            sent.setdefault("Content-Type", "application/json")
        async with self.http.request(
            method, self.server.url + path, data=data, headers=sent
        ) as answer:
            text = await answer.read()
            parsed = orjson.loads(text) if text else None
            return answer.status, parsed, dict(answer.headers)


@pytest.fixture
async def api(redis: RedisProcess, feed_server: Servers) -> AsyncIterator[Api]:
    server = feed_server(redis.url, env={"FEED_API_RATE": "1000"})
    bus = Bus(redis.url)
    made = {}
    for who, role, rooms in [
        ("admin", "admin", []),
        ("moderator", "moderator", []),
        ("atlas-operator", "operator", ["atlas"]),
        ("anfa-operator", "operator", ["anfa"]),
    ]:
        made[who], _ = await tokens.create(bus, role, rooms, who)
    await bus.aclose()
    async with aiohttp.ClientSession() as http:
        yield Api(server, http, made)


async def import_fixture(api: Api) -> dict[str, Any]:
    status, body, _ = await api.call("POST", "/api/schedule", who="admin", raw=FIXTURE.read_bytes())
    assert status == 200, body
    return body  # type: ignore[no-any-return]


STATUS = {"status": "live", "delay_min": 0}
ANNOUNCE = {"text": {"fr": "Bienvenue", "ar": "مرحبا", "en": "Welcome"}, "priority": "info"}


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "expected"),
    [
        # nobody, or a token that is not one
        (None, "POST", "/api/rooms/atlas/status", STATUS, 401),
        ("feed_nope_nope", "POST", "/api/rooms/atlas/status", STATUS, 401),
        ("garbage", "POST", "/api/announcements", ANNOUNCE, 401),
        (None, "POST", "/api/schedule", None, 401),
        (None, "DELETE", "/api/announcements/x", None, 401),
        # an operator: its own rooms' status, nothing else
        ("atlas-operator", "POST", "/api/rooms/atlas/status", STATUS, 200),
        ("atlas-operator", "POST", "/api/rooms/anfa/status", STATUS, 403),
        ("anfa-operator", "POST", "/api/rooms/atlas/status", STATUS, 403),
        ("atlas-operator", "POST", "/api/announcements", ANNOUNCE, 403),
        ("atlas-operator", "DELETE", "/api/announcements/x", None, 403),
        ("atlas-operator", "POST", "/api/schedule", None, 403),
        # a moderator: announcements and every room's status, no imports
        ("moderator", "POST", "/api/rooms/anfa/status", STATUS, 200),
        ("moderator", "POST", "/api/announcements", ANNOUNCE, 201),
        ("moderator", "DELETE", "/api/announcements/unknown", None, 404),
        ("moderator", "POST", "/api/schedule", None, 403),
        # an admin: everything
        ("admin", "POST", "/api/rooms/atlas/status", STATUS, 200),
        ("admin", "POST", "/api/announcements", ANNOUNCE, 201),
        # anyone may read the program
        (None, "GET", "/api/schedule", None, 200),
    ],
)
async def test_who_may_do_what(  # noqa: PLR0917 - pytest passes the parameters by position
    api: Api, who: str | None, method: str, path: str, body: Any, expected: int
) -> None:
    await import_fixture(api)
    status, answer, headers = await api.call(method, path, who=who, body=body)
    assert status == expected, answer
    if status >= 400:
        assert set(answer["error"]) == {"code", "message", "field"}
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_forbidden_comes_before_the_body_is_read(api: Api) -> None:
    status, answer, _ = await api.call(
        "POST", "/api/rooms/anfa/status", who="atlas-operator", raw=b"{not json",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 403 and answer["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/rooms/atlas/status", b"{not json", 400, None),
        ("/api/rooms/atlas/status", b"[1]", 400, None),
        ("/api/rooms/atlas/status", b'{"status": "sleeping"}', 422, "status"),
        ("/api/rooms/atlas/status", b'{"status": "live", "delay_min": -3}', 422, "delay_min"),
        ("/api/rooms/atlas/status", b'{"status": "live", "extra": 1}', 422, "extra"),
        ("/api/rooms/nowhere/status", b'{"status": "live"}', 404, None),
        ("/api/announcements", b'{"text": ""}', 422, "text"),
        ("/api/announcements", b'{"text": {"xx-not-a-lang!": "hi"}}', 422, "text"),
        ("/api/announcements", b'{"text": "hi", "priority": "urgent"}', 422, "priority"),
        ("/api/announcements", b'{"text": "hi", "expires_at": "tomorrow"}', 422, "expires_at"),
        ("/api/announcements", b'{"text": "hi", "expires_at": "2030-01-01T10:00:00"}', 422,
         "expires_at"),
        ("/api/announcements", b'{"text": "hi", "rooms": "atlas"}', 422, "rooms"),
        ("/api/announcements", b'{"text": "hi", "rooms": ["Not Valid"]}', 422, "rooms"),
        ("/api/announcements", b'{"text": "hi", "rooms": ["nowhere"]}', 422, "rooms"),
        ("/api/announcements", b'{"text": "hi", "id": 5}', 422, "id"),
        ("/api/rooms/atlas/status", b'{"status": "moved", "moved_to": "nowhere"}', 422,
         "moved_to"),
    ],
)  # fmt: skip
async def test_bad_bodies_say_what_is_wrong(
    api: Api, path: str, body: bytes, status: int, field: str | None
) -> None:
    await import_fixture(api)
    got, answer, _ = await api.call(
        "POST", path, who="admin", raw=body, headers={"Content-Type": "application/json"}
    )
    assert got == status, answer
    assert answer["error"]["message"]
    assert answer["error"]["field"] == field


async def test_an_idempotent_retry_publishes_once(api: Api) -> None:
    key = {"Idempotency-Key": "tablet-7-tap-42"}
    async with connect(api.server.ws_url) as client:
        await client.subscribe(["room:atlas"])
        first = await api.call("POST", "/api/rooms/atlas/status", who="admin", body=STATUS,
                               headers=key)  # fmt: skip
        again = await api.call("POST", "/api/rooms/atlas/status", who="admin", body=STATUS,
                               headers=key)  # fmt: skip
        assert first[0] == again[0] == 200
        assert first[1] == again[1]
        assert again[2].get("Idempotent-Replayed") == "true"
        other = await api.call("POST", "/api/rooms/atlas/status", who="admin", body=STATUS)
        events = await client.events(2)
    assert [e["seq"] for e in events] == [first[1]["seq"], other[1]["seq"]]


async def test_rate_limits_answer_429_with_retry_after(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, env={"FEED_API_RATE": "5"})
    bus = Bus(redis.url)
    secret, _ = await tokens.create(bus, "moderator", [])
    await bus.aclose()
    async with aiohttp.ClientSession() as http:
        api = Api(server, http, {"m": secret})
        codes = [
            (await api.call("POST", "/api/rooms/atlas/status", who="m", body=STATUS))[0]
            for _ in range(7)
        ]
        status, answer, headers = await api.call(
            "POST", "/api/announcements", who="m", body=ANNOUNCE
        )
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
    assert status == 429 and answer["error"]["code"] == "rate_limited"
    assert 1 <= int(headers["Retry-After"]) <= 60


async def test_the_api_and_the_cli_publish_the_same_thing(api: Api, redis: RedisProcess) -> None:
    from tests.web.test_cli import feed  # noqa: PLC0415

    async with connect(api.server.ws_url) as client:
        await client.subscribe(["room:atlas"])
        await api.call("POST", "/api/rooms/atlas/status", who="admin",
                       body={"status": "delayed", "delay_min": 10, "session": "s-1"})  # fmt: skip
        code, _, err = feed("publish", "status", "atlas", "delayed", "--delay", "10",
                            "--session", "s-1", "--redis-url", redis.url)  # fmt: skip
        assert code == 0, err
        by_api, by_cli = await client.events(2)
    assert by_api["kind"] == by_cli["kind"] == "status"
    assert by_api["data"] == by_cli["data"]


async def test_announcements_are_retracted_and_expire_on_open_screens(api: Api) -> None:
    async with connect(api.server.ws_url) as client:
        await client.subscribe(["venue", "room:atlas"])
        status, made, _ = await api.call(
            "POST", "/api/announcements", who="moderator",
            body={"text": "Salle Atlas pleine", "rooms": ["atlas"], "priority": "important"},
        )  # fmt: skip
        assert status == 201
        (posted,) = await client.events(1)
        assert posted["channel"] == "room:atlas" and posted["data"]["id"] == made["id"]
        status, gone, _ = await api.call("DELETE", f"/api/announcements/{made['id']}",
                                         who="moderator")  # fmt: skip
        assert status == 200 and gone["channels"] == ["room:atlas"]
        (retracted,) = await client.events(1)
        assert retracted["kind"] == "retract" and retracted["data"]["id"] == made["id"]

        soon = _in_seconds(1.5)
        status, short, _ = await api.call(
            "POST", "/api/announcements", who="moderator",
            body={"text": {"en": "Doors close", "fr": "Fermeture"}, "expires_at": soon},
        )  # fmt: skip
        assert status == 201
        posted, expired = await client.events(2, timeout=10)
    assert posted["channel"] == expired["channel"] == "venue"
    assert expired["kind"] == "retract"
    assert expired["data"] == {"id": short["id"], "reason": "expired"}


def _in_seconds(seconds: float) -> str:
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_one_idempotency_key_makes_one_change_even_when_raced(api: Api) -> None:
    import asyncio  # noqa: PLC0415

    key = {"Idempotency-Key": "post-once"}
    body = {"text": "Une seule fois", "rooms": ["atlas", "anfa"]}
    answers = await asyncio.gather(
        *(api.call("POST", "/api/announcements", who="moderator", body=body, headers=key)
          for _ in range(8))
    )  # fmt: skip
    made = [a for a in answers if a[0] == 201]
    assert made and all(a[0] in (201, 409) for a in answers), [a[:2] for a in answers]
    assert len({a[1]["id"] for a in made}) == 1
    status, answer, _ = await api.call(
        "POST", "/api/announcements", who="moderator", body={**body, "text": "Autre"}, headers=key
    )
    assert status == 422 and answer["error"]["field"] == "Idempotency-Key"
    async with connect(api.server.ws_url) as client:
        got = await client.subscribe(["room:atlas"])
    (snapshot,) = [m for m in got if m["type"] == "snapshot"]
    assert [a["text"] for a in snapshot["state"]["announcements"]] == ["Une seule fois"]


async def test_a_new_version_aimed_elsewhere_leaves_the_old_rooms(api: Api) -> None:
    status, _, _ = await api.call(
        "POST", "/api/announcements", who="moderator",
        body={"id": "fire", "text": "Évacuation", "priority": "emergency"},
    )  # fmt: skip
    assert status == 201
    async with connect(api.server.ws_url) as client:
        await client.subscribe(["venue", "room:atlas"])
        status, _, _ = await api.call(
            "POST", "/api/announcements", who="moderator",
            body={"id": "fire", "text": "Évacuation de la salle Atlas", "rooms": ["atlas"]},
        )  # fmt: skip
        assert status == 201
        posted, left = sorted(await client.events(2), key=lambda e: e["kind"])
        assert (posted["channel"], posted["kind"]) == ("room:atlas", "announce")
        assert (left["channel"], left["kind"]) == ("venue", "retract")
        status, gone, _ = await api.call("DELETE", "/api/announcements/fire", who="moderator")
        assert status == 200 and gone["channels"] == ["room:atlas"]


async def test_a_body_that_arrives_in_pieces_is_read_whole(api: Api) -> None:
    import asyncio  # noqa: PLC0415

    body = orjson.dumps({"status": "live", "session": "x" * 150, "delay_min": 0})

    async def slowly() -> Any:
        yield body[:40]
        await asyncio.sleep(0.3)
        yield body[40:]

    async with api.http.post(
        api.server.url + "/api/rooms/atlas/status",
        data=slowly(),
        headers={"Authorization": f"Bearer {api.tokens['admin']}",
                 "Content-Type": "application/json"},
    ) as answer:  # fmt: skip
        assert answer.status == 200, await answer.text()


async def test_a_program_over_32_mib_is_refused_whole(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/api/schedule", who="admin", raw=b" " * (32 * 1024 * 1024 + 1)
    )
    assert status == 413 and set(body["error"]) == {"code", "message", "field"}
