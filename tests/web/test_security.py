"""Security, end to end against real `feed serve` processes and Redis.

1. Who may do what: one table of expected answers, every principal against every endpoint of
   web/openapi.json and every websocket action, checked against the document itself.
2. Secrets never leak: no token and no Redis password in logs (at debug level), HTTP answers,
   websocket messages or the command line's output, through errors and a Redis outage.
3. What makes tokens safe: random, only a hash at rest, compared in constant time.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import hashlib
import hmac
import inspect
import json
import math
import os
import re
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
import websockets

from feed import keys
from feed.bus import Bus
from feed.embedded import RedisProcess, free_port
from feed.errors import Unauthorized
from publisher import tokens
from tests.conftest import FeedServer, connect, feed_command

Servers = Callable[..., FeedServer]
T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = json.loads((ROOT / "web" / "openapi.json").read_text(encoding="utf-8"))
PROGRAM = (Path(__file__).resolve().parent / "fixtures" / "expo.json").read_bytes()
CHANNELS = ("venue", "room:atlas", "room:anfa")
TOKEN_SHAPE = re.compile(r"feed_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


# ---- 1. the authorization matrix ----------------------------------------------------------------

# The columns: who is asking. "malformed" sends an Authorization header that is not a feed token;
# "unknown" one of the right shape that was never made; "revoked-*" were made, then revoked with
# publisher.tokens.revoke (the revoked operator's room is atlas, so it was allowed there).
PRINCIPALS = (
    "anonymous",
    "malformed",
    "unknown",
    "operator-atlas",
    "operator-anfa",
    "moderator",
    "admin",
    "revoked-operator",
    "revoked-moderator",
    "revoked-admin",
    "screen",
    "revoked-screen",
)

# The rows: what is asked. Every HTTP endpoint of web/openapi.json, then the websocket (101: the
# upgrade succeeds and the action gets its documented answer, WS_ANSWERS below).
# Derived from web/openapi.json (`security` scopes are the roles; an operator covers its rooms
# only; 401 before 403); test_the_matrix_is_what_openapi_says recomputes it from the document.
# fmt: off
MATRIX: dict[str, tuple[int, ...]] = {
    #                                   anon malf unkn opA  opB  mod  adm  rvOp rvMd rvAd scr  rvSc
    "GET /api/openapi.json":           (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /api/schedule":               (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /api/channels":               (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /healthz":                    (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /readyz":                     (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /ws (no upgrade)":            (400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400),
    "GET /api/me":                     (401, 401, 401, 200, 200, 200, 200, 401, 401, 401, 200, 401),
    "POST /api/schedule":              (401, 401, 401, 403, 403, 403, 200, 401, 401, 401, 403, 401),
    "POST /api/rooms/atlas/status":    (401, 401, 401, 200, 403, 200, 200, 401, 401, 401, 403, 401),
    "POST /api/rooms/anfa/status":     (401, 401, 401, 403, 200, 200, 200, 401, 401, 401, 403, 401),
    "POST /api/announcements (venue)": (401, 401, 401, 403, 403, 201, 201, 401, 401, 401, 403, 401),
    "POST /api/announcements (atlas)": (401, 401, 401, 403, 403, 201, 201, 401, 401, 401, 403, 401),
    "DELETE /api/announcements/{id}":  (401, 401, 401, 403, 403, 200, 200, 401, 401, 401, 403, 401),
    "GET /":                           (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /console":                    (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /screen/hall":                (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /screen/room/atlas":          (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /sw.js":                      (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /manifest.webmanifest":       (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /metrics":                    (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /sse":                        (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /api/rooms/atlas/calendar.ics":
                                       (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /api/presence":               (401, 401, 401, 200, 200, 200, 200, 401, 401, 401, 403, 401),
    "GET /api/screens":                (401, 401, 401, 200, 200, 200, 200, 401, 401, 401, 403, 401),
    "GET /api/schedule/follow":        (401, 401, 401, 200, 200, 200, 200, 401, 401, 401, 403, 401),
    "GET /api/calendar.ics":           (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /api/announcements/{id}/receipts":
                                       (401, 401, 401, 200, 200, 200, 200, 401, 401, 401, 403, 401),
    "WS connect":                      (101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101),
    "WS subscribe venue":              (101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101),
    "WS subscribe room:atlas":         (101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101),
    "WS unsubscribe":                  (101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101),
    "WS ping":                         (101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101),
    "WS identify as a screen":         (101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101),
    "WS try to publish a status":      (101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101),
}
# fmt: on

# What each websocket action answers, for everyone: the feed is anonymous and read-only.
WS_ANSWERS = {
    "WS connect": "hello",
    "WS subscribe venue": "subscribed",
    "WS subscribe room:atlas": "subscribed",
    "WS unsubscribe": "unsubscribed",
    "WS ping": "pong",
    "WS identify as a screen": "identified",  # with a screen token; "error" with anything else
    "WS try to publish a status": "error",
}

STATUS = {"status": "live", "delay_min": 0}
WELCOME = {"text": {"fr": "Bienvenue", "ar": "مرحبا", "en": "Welcome"}, "priority": "info"}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    template: str  # the path as web/openapi.json names it
    body: bytes | None = None
    changes: str | None = None  # the channel that moves by exactly one event when it succeeds
    stream: bool = False  # an answer that never ends (Server-Sent Events): only its status


CALLS = {
    "GET /api/openapi.json": Call("GET", "/api/openapi.json", "/api/openapi.json"),
    "GET /api/schedule": Call("GET", "/api/schedule", "/api/schedule"),
    "GET /api/channels": Call("GET", "/api/channels", "/api/channels"),
    "GET /healthz": Call("GET", "/healthz", "/healthz"),
    "GET /readyz": Call("GET", "/readyz", "/readyz"),
    "GET /ws (no upgrade)": Call("GET", "/ws", "/ws"),
    "GET /api/me": Call("GET", "/api/me", "/api/me"),
    "POST /api/schedule": Call("POST", "/api/schedule", "/api/schedule", PROGRAM),
    "POST /api/rooms/atlas/status": Call(
        "POST", "/api/rooms/atlas/status", "/api/rooms/{room}/status", orjson.dumps(STATUS),
        "room:atlas",
    ),
    "POST /api/rooms/anfa/status": Call(
        "POST", "/api/rooms/anfa/status", "/api/rooms/{room}/status", orjson.dumps(STATUS),
        "room:anfa",
    ),
    "POST /api/announcements (venue)": Call(
        "POST", "/api/announcements", "/api/announcements", orjson.dumps(WELCOME), "venue"
    ),
    "POST /api/announcements (atlas)": Call(
        "POST", "/api/announcements", "/api/announcements",
        orjson.dumps({**WELCOME, "rooms": ["atlas"]}), "room:atlas",
    ),
    "DELETE /api/announcements/{id}": Call(
        "DELETE", "/api/announcements/{id}", "/api/announcements/{id}", None, "venue"
    ),
    "GET /": Call("GET", "/", "/"),
    "GET /console": Call("GET", "/console", "/console"),
    "GET /screen/hall": Call("GET", "/screen/hall", "/screen/hall"),
    "GET /screen/room/atlas": Call("GET", "/screen/room/atlas", "/screen/room/{room}"),
    "GET /sw.js": Call("GET", "/sw.js", "/sw.js"),
    "GET /manifest.webmanifest": Call("GET", "/manifest.webmanifest", "/manifest.webmanifest"),
    "GET /metrics": Call("GET", "/metrics", "/metrics"),
    "GET /sse": Call("GET", "/sse?channels=venue", "/sse", stream=True),
    "GET /api/rooms/atlas/calendar.ics": Call(
        "GET", "/api/rooms/atlas/calendar.ics", "/api/rooms/{room}/calendar.ics"
    ),
    "GET /api/presence": Call("GET", "/api/presence", "/api/presence"),
    "GET /api/screens": Call("GET", "/api/screens", "/api/screens"),
    "GET /api/schedule/follow": Call("GET", "/api/schedule/follow", "/api/schedule/follow"),
    "GET /api/calendar.ics": Call(
        "GET", "/api/calendar.ics?session=7f6b1c0e-0000-4000-8000-000000000001", "/api/calendar.ics"
    ),
    "GET /api/announcements/{id}/receipts": Call(
        "GET", "/api/announcements/{id}/receipts", "/api/announcements/{id}/receipts"
    ),
}  # fmt: skip

# The role and rooms behind each valid principal; the others hold no valid token.
HOLDS = {
    "operator-atlas": ("operator", ["atlas"]),
    "operator-anfa": ("operator", ["anfa"]),
    "moderator": ("moderator", []),
    "admin": ("admin", []),
    "screen": ("screen", []),
}
REVOKED = {
    "revoked-operator": ("operator", ["atlas"]),
    "revoked-moderator": ("moderator", []),
    "revoked-admin": ("admin", []),
    "revoked-screen": ("screen", []),
}


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a private loop, from a synchronous (module) fixture."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FEED_")} | extra


def _secret_of(token: str) -> str:
    return token.split("_", 2)[2]


def _right_shape_token() -> str:
    return f"feed_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


@dataclass
class Venue:
    """One server and its Redis for the whole matrix, with the program imported."""

    server: FeedServer
    redis_url: str
    auth: dict[str, str | None]  # principal -> Authorization header (None: no header)


async def _make_tokens(redis_url: str) -> dict[str, str]:
    bus = Bus(redis_url)
    made: dict[str, str] = {}
    try:
        for who, (role, rooms) in (HOLDS | REVOKED).items():
            made[who], token = await tokens.create(bus, role, rooms, who)
            if who in REVOKED:
                await tokens.revoke(bus, token.id)
    finally:
        await bus.aclose()
    return made


async def _follower_state(redis_url: str) -> None:
    """What a `feed schedule follow` records of itself, so its endpoint has something to show."""
    bus = Bus(redis_url)
    try:
        state = {"url": "https://pretalx.example/expo/schedule.json", "every": 60, "state": "ok",
                 "failures": 0}  # fmt: skip
        await bus.remember(keys.FOLLOW, orjson.dumps(state), 3600)
    finally:
        await bus.aclose()


async def _import_program(server: FeedServer, admin: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url + "/api/schedule", data=PROGRAM, headers={"Authorization": f"Bearer {admin}"}
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    where = tmp_path_factory.mktemp("matrix")
    redis = RedisProcess(where / "redis", port=free_port())
    server = FeedServer(
        free_port(), ["--redis-url", redis.url], where, _env(FEED_API_RATE="1000000")
    )
    try:
        redis.start()
        server.start()
        made = _run(_make_tokens(redis.url))
        _run(_import_program(server, made["admin"]))
        _run(_follower_state(redis.url))
        auth: dict[str, str | None] = {
            "anonymous": None,
            "malformed": "Bearer this-is-not-a-feed-token",
            "unknown": f"Bearer {_right_shape_token()}",
        }
        auth |= {who: f"Bearer {secret}" for who, secret in made.items()}
        assert set(auth) == set(PRINCIPALS)
        yield Venue(server, redis.url, auth)
    finally:
        server.stop()
        redis.kill()


async def _positions(redis_url: str) -> dict[str, int]:
    """The seq of each channel the matrix may change, as Redis has it."""
    bus = Bus(redis_url)
    try:
        return {ch: (await bus.sync(ch)).seq for ch in CHANNELS}
    finally:
        await bus.aclose()


async def _ws_action(venue: Venue, row: str, auth: str | None) -> str:
    """Run one websocket action with the principal's Authorization header on the upgrade;
    return the type of the server's answer."""
    headers = {"Authorization": auth} if auth else {}
    async with connect(venue.server.ws_url, additional_headers=headers) as client:
        if row == "WS identify as a screen":  # the token goes in the message, never the header
            await client.send({"type": "identify", "token": (auth or "Bearer none").split()[-1]})
            answer = await client.recv()
            if answer["type"] == "error":
                assert answer["code"] in ("unauthorized", "forbidden"), answer
                assert (auth or "none").split()[-1] not in str(answer)
            return str(answer["type"])
        if row == "WS connect":
            return str(client.seen[0]["type"])
        if row in ("WS subscribe venue", "WS subscribe room:atlas"):
            channel = row.rsplit(" ", 1)[1]
            got = await client.subscribe([channel])
            assert [m["type"] for m in got] == ["snapshot", "subscribed"], got
            return str(got[-1]["type"])
        if row == "WS unsubscribe":
            await client.subscribe(["venue"])
            await client.send({"type": "unsubscribe", "channels": ["venue"]})
            (answer,) = await client.until(lambda m: m["type"] == "unsubscribed")
            assert answer["channels"] == ["venue"]
            return str(answer["type"])
        if row == "WS ping":
            await client.send({"type": "ping"})
            return str((await client.recv())["type"])
        assert row == "WS try to publish a status"
        await client.send({"type": "status", "room": "atlas", "status": "cancelled"})
        answer = await client.recv()
        assert answer.get("code") == "invalid", answer
        return str(answer["type"])


@pytest.mark.parametrize(
    ("row", "who", "expected"),
    [
        pytest.param(row, who, codes[i], id=f"{row} | {who}")
        for row, codes in MATRIX.items()
        for i, who in enumerate(PRINCIPALS)
    ],
)
async def test_who_may_do_what(venue: Venue, row: str, who: str, expected: int) -> None:
    auth = venue.auth[who]
    before = await _positions(venue.redis_url)
    if row.startswith("WS "):
        assert expected == 101
        said = WS_ANSWERS[row] if who == "screen" or "identify" not in row else "error"
        assert await _ws_action(venue, row, auth) == said
        assert await _positions(venue.redis_url) == before  # read-only
        return

    call = CALLS[row]
    path = call.path
    async with aiohttp.ClientSession() as http:
        if "{id}" in path:  # an announcement that exists, made by the admin for this case
            announcement = f"matrix-{who}"
            async with http.post(
                venue.server.url + "/api/announcements",
                json={**WELCOME, "id": announcement},
                headers={"Authorization": str(venue.auth["admin"])},
            ) as made:
                assert made.status == 201, await made.text()
            path = path.replace("{id}", announcement)
            before = await _positions(venue.redis_url)
        headers = {"Authorization": auth} if auth else {}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        async with http.request(
            call.method, venue.server.url + path, data=call.body, headers=headers
        ) as answer:
            raw = b"" if call.stream and answer.status == 200 else await answer.read()
            status, got = answer.status, answer.headers

    assert status == expected, raw[:500]
    after = await _positions(venue.redis_url)
    if auth is not None:  # whatever the answer, it never repeats the token
        assert auth.split()[-1].encode() not in raw
    if status >= 400:
        body = orjson.loads(raw)
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
        assert body["error"]["message"]
        assert after == before, "a refused request changed the feed"
        if status == 401:
            assert body["error"]["code"] == "unauthorized"
            assert got["WWW-Authenticate"].startswith("Bearer"), dict(got)
            assert got["WWW-Authenticate"] == 'Bearer realm="feed"'
        if status == 403:
            assert body["error"]["code"] == "forbidden"
            assert "WWW-Authenticate" not in got
    elif call.changes is not None:  # allowed: exactly one event, on the channel it names
        expected_after = dict(before)
        expected_after[call.changes] += 1
        assert after == expected_after


def _room_in(path: str) -> str | None:
    match = re.fullmatch(r"/api/rooms/([^/]+)/status", path)
    return match.group(1) if match else None


def _derived(call: Call, who: str) -> int:
    """What web/openapi.json says `who` gets for `call`."""
    operation = OPENAPI["paths"][call.template][call.method.lower()]
    codes = sorted(int(code) for code in operation["responses"])
    if call.template == "/ws":
        return 400  # a plain GET, not a websocket handshake
    success = next(code for code in codes if 200 <= code < 300)
    security = operation.get("security")
    if not security:
        return success
    roles = {role for requirement in security for role in requirement.get("feedToken", [])}
    if who not in HOLDS:
        return 401  # no token, not a feed token, unknown or revoked: 401 comes first
    role, rooms = HOLDS[who]
    if role not in roles:
        return 403
    room = _room_in(call.path)
    if role == "operator" and room is not None and room not in rooms:
        return 403  # "an operator token covers only the rooms named when it was created"
    return success


def test_the_matrix_is_what_openapi_says() -> None:
    documented = {
        (method.upper(), path)
        for path, operations in OPENAPI["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    covered = {(call.method, call.template) for call in CALLS.values()}
    assert documented == covered, "every endpoint of web/openapi.json is in the matrix"
    assert set(MATRIX) == set(CALLS) | set(WS_ANSWERS)
    for row, call in CALLS.items():
        derived = tuple(_derived(call, who) for who in PRINCIPALS)
        assert MATRIX[row] == derived, row
    # The websocket is documented as anonymous: no security, whoever connects.
    assert OPENAPI["paths"]["/ws"]["get"]["security"] == []
    assert "Anonymous and read-only" in OPENAPI["paths"]["/ws"]["get"]["description"]


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Basic {b64}",
        "Token {admin}",
        "{admin}",
        "Bearer {admin}x",
        "Bearer {admin} {admin}",
        "Bearer x{admin}",
        "Bearer FEED_{admin_rest}",
        "Bearer feed_{admin_id}_",
        "Bearer feed_{admin_id}",
        "Bearer feed__{admin_secret}",
        "Bearer feed_{admin_id}_{moderator_secret}",
        "Bearer feed_{moderator_id}_{admin_secret}",
        "Bearer feed_{admin_id}_{admin_secret_upper}",
    ],
)
async def test_anything_but_the_exact_token_is_a_401(venue: Venue, header: str) -> None:
    admin = str(venue.auth["admin"]).split()[1]
    moderator = str(venue.auth["moderator"]).split()[1]
    _, admin_id, admin_secret = admin.split("_", 2)
    _, moderator_id, moderator_secret = moderator.split("_", 2)
    value = header.format(
        admin=admin,
        admin_rest=admin.removeprefix("feed_"),
        admin_id=admin_id,
        admin_secret=admin_secret,
        admin_secret_upper=admin_secret.swapcase(),
        moderator_id=moderator_id,
        moderator_secret=moderator_secret,
        b64=base64.b64encode(f"admin:{admin}".encode()).decode(),
    )
    async with aiohttp.ClientSession() as http:
        for method, path, body in [
            ("GET", "/api/me", None),
            ("POST", "/api/rooms/atlas/status", STATUS),
            ("POST", "/api/announcements", WELCOME),
        ]:
            async with http.request(
                method, venue.server.url + path, json=body, headers={"Authorization": value}
            ) as answer:
                assert answer.status == 401, (path, await answer.text())
                assert answer.headers["WWW-Authenticate"] == 'Bearer realm="feed"'
                error = (await answer.json())["error"]
                assert error["code"] == "unauthorized" and error["field"] is None


async def test_the_scheme_is_case_insensitive(venue: Venue) -> None:
    """RFC 7235: the auth scheme is case-insensitive (a positive control for the test above)."""
    admin = str(venue.auth["admin"]).split()[1]
    async with aiohttp.ClientSession() as http:
        for value in (f"bearer {admin}", f"BEARER {admin}", f"Bearer   {admin}  "):
            async with http.get(
                venue.server.url + "/api/me", headers={"Authorization": value}
            ) as answer:
                assert answer.status == 200, value


@pytest.mark.parametrize("role", ["operator", "moderator", "admin"])
async def test_a_revoked_token_is_refused_at_once(
    redis: RedisProcess, feed_server: Servers, role: str
) -> None:
    """Two servers on the same Redis accept a token, it is revoked, and the very next request
    on either gets 401: no server keeps it alive from a cache, nor replays an answer for it."""
    servers = [feed_server(redis.url, env={"FEED_API_RATE": "1000"}) for _ in range(2)]
    bus = Bus(redis.url)
    try:
        secret, token = await tokens.create(bus, role, ["atlas"] if role == "operator" else [])
        auth = {"Authorization": f"Bearer {secret}"}
        retry = {"Idempotency-Key": "tap-1"}
        async with aiohttp.ClientSession() as http:
            for server in servers:
                async with http.get(server.url + "/api/me", headers=auth) as answer:
                    assert answer.status == 200
                    assert (await answer.json())["id"] == token.id
                async with http.post(
                    server.url + "/api/rooms/atlas/status", json=STATUS, headers=auth | retry
                ) as answer:
                    assert answer.status == 200
            seq = (await bus.sync("room:atlas")).seq

            await tokens.revoke(bus, token.id)

            for server in servers:
                async with http.get(server.url + "/api/me", headers=auth) as answer:
                    assert answer.status == 401
                for extra in (retry, {}):  # not even the stored answer to a retry
                    async with http.post(
                        server.url + "/api/rooms/atlas/status", json=STATUS, headers=auth | extra
                    ) as answer:
                        assert answer.status == 401, await answer.text()
                        assert "Idempotent-Replayed" not in answer.headers
        assert (await bus.sync("room:atlas")).seq == seq
    finally:
        await bus.aclose()


# ---- 2. secrets never leak ---------------------------------------------------------------------

PASSWORD = "s3cret-pw"


@dataclass
class Seen:
    """Everything a server said: HTTP answers (status, headers, body) and websocket frames."""

    http: list[str] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)

    async def call(
        self,
        session: aiohttp.ClientSession,
        url: str,
        method: str = "GET",
        *,
        auth: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> int:
        sent = dict(headers or {})
        if auth is not None:
            sent["Authorization"] = auth
        async with session.request(method, url, data=body, headers=sent) as answer:
            raw = await answer.read()
            lines = [f"{answer.status} {answer.reason}"]
            lines += [f"{k}: {v}" for k, v in answer.headers.items()]
            self.http.append("\n".join(lines) + "\n\n" + raw.decode(errors="replace"))
            return answer.status

    def everything(self) -> dict[str, str]:
        return {"HTTP answers": "\n".join(self.http), "websocket frames": "\n".join(self.frames)}


async def _listen(url: str, seen: Seen, ready: asyncio.Event) -> None:
    """A screen watching every channel for the whole test, keeping every frame as received."""
    async with websockets.connect(url, open_timeout=5) as conn:
        seen.frames.append(str(await conn.recv()))
        await conn.send(orjson.dumps({"type": "subscribe", "channels": list(CHANNELS)}).decode())
        ready.set()
        async for frame in conn:
            seen.frames.append(str(frame))


async def _until_ready(url: str, ready: bool, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url + "/readyz") as answer:
                    if (answer.status == 200) == ready:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"/readyz never said ready={ready}")


def _assert_absent(secrets_: dict[str, str], places: dict[str, str]) -> None:
    for place, text in places.items():
        for name, secret in secrets_.items():
            assert secret not in text, f"{name} appears in {place}"


@dataclass
class Traffic:
    """Requests to one server, each answer kept in `seen` and checked against its status."""

    http: aiohttp.ClientSession
    url: str
    seen: Seen
    bearer: dict[str, str]

    async def __call__(self, method: str, path: str, expected: int, **kw: Any) -> None:
        got = await self.seen.call(self.http, self.url + path, method, **kw)
        assert got == expected, (method, path, self.seen.http[-1][:300])


AS_JSON = {"Content-Type": "application/json"}


async def _valid_work(call: Traffic) -> None:
    bearer, status = call.bearer, orjson.dumps(STATUS)
    await call("POST", "/api/schedule", 200, auth=bearer["admin"], body=PROGRAM)
    for who in HOLDS:
        await call("GET", "/api/me", 200, auth=bearer[who])
    for _ in range(2):  # the second time, the stored answer
        await call("POST", "/api/rooms/atlas/status", 200, auth=bearer["operator-atlas"],
                   body=status, headers=AS_JSON | {"Idempotency-Key": "k1"})  # fmt: skip
    await call("POST", "/api/announcements", 201, auth=bearer["moderator"],
               body=orjson.dumps({**WELCOME, "id": "hello"}), headers=AS_JSON)  # fmt: skip
    await call("DELETE", "/api/announcements/hello", 200, auth=bearer["moderator"])
    for path in ("/api/schedule", "/api/channels", "/readyz", "/healthz"):
        await call("GET", path, 200, auth=bearer["admin"])


async def _invalid_tokens(call: Traffic) -> None:
    bearer, status = call.bearer, orjson.dumps(STATUS)
    admin, moderator = bearer["admin"].split()[1], bearer["moderator"].split()[1]
    for who in ("revoked", "unknown", "crossed"):
        await call("GET", "/api/me", 401, auth=bearer[who])
        await call("POST", "/api/rooms/atlas/status", 401, auth=bearer[who], body=status,
                   headers=AS_JSON)  # fmt: skip
    for auth in (f"Token {admin}", admin, f"Basic {admin}", f"Bearer {admin}!",
                 f"Bearer {admin[:-1]}", f"Bearer {admin} {moderator}"):  # fmt: skip
        await call("GET", "/api/me", 401, auth=auth)


async def _tokens_in_wrong_places(call: Traffic) -> None:
    """Other headers, the body."""
    bearer, admin = call.bearer, call.bearer["admin"].split()[1]
    for name in ("X-Api-Key", "Token", "X-Auth-Token", "Proxy-Authorization"):
        await call("GET", "/api/me", 401, headers={name: admin})
    await call("GET", "/api/me", 401, headers={"Cookie": f"token={admin}"})
    in_body = orjson.dumps({**STATUS, "token": admin})
    await call("POST", "/api/rooms/atlas/status", 401, headers=AS_JSON, body=in_body)
    await call("POST", "/api/rooms/atlas/status", 422, auth=bearer["admin"], headers=AS_JSON,
               body=in_body)  # fmt: skip
    in_body = orjson.dumps({**WELCOME, "authorization": f"Bearer {admin}"})
    await call("POST", "/api/announcements", 422, auth=bearer["moderator"], headers=AS_JSON,
               body=in_body)  # fmt: skip
    await call("POST", "/api/announcements", 403, auth=bearer["operator-atlas"],
               headers=AS_JSON, body=orjson.dumps({"text": admin}))  # fmt: skip


async def _errors(call: Traffic) -> None:
    """Bad bodies, unknown things, wrong methods."""
    admin, status = call.bearer["admin"], orjson.dumps(STATUS)
    for body, headers, code in [
        (b"{not json", AS_JSON, 400),
        (b"[1]", AS_JSON, 400),
        (status, {"Content-Type": "text/plain"}, 400),
        (b'{"status": "live", "pad": "' + b"x" * 300_000 + b'"}', AS_JSON, 400),
        (status, AS_JSON | {"Idempotency-Key": ""}, 400),
        (b'{"status": "sleeping"}', AS_JSON, 422),
        (b'{"status": "live", "delay_min": -1}', AS_JSON, 422),
    ]:
        await call("POST", "/api/rooms/atlas/status", code, auth=admin, body=body,
                   headers=headers)  # fmt: skip
    for room, code in (("nowhere", 404), ("Not%20Valid", 422)):
        await call("POST", f"/api/rooms/{room}/status", code, auth=admin, body=status,
                   headers=AS_JSON)  # fmt: skip
    await call("DELETE", "/api/announcements/nothing", 404, auth=call.bearer["moderator"])
    await call("POST", "/api/schedule", 422, auth=admin, body=b"<nope/>")
    await call("GET", "/nowhere", 404, auth=admin)
    await call("PUT", "/api/schedule", 405, auth=admin, body=PROGRAM)
    await call("GET", "/ws", 400, auth=admin)
    await call("HEAD", "/api/me", 200, auth=admin)


async def _outage(call: Traffic, redis: RedisProcess, ws_url: str) -> None:
    """Redis killed, requests and a screen meanwhile, then Redis back."""
    bearer, status = call.bearer, orjson.dumps(STATUS)
    redis.kill()
    await _until_ready(call.url, ready=False)
    await call("GET", "/api/me", 503, auth=bearer["admin"])
    await call("GET", "/api/me", 503, auth=bearer["revoked"])
    await call("POST", "/api/rooms/atlas/status", 503, auth=bearer["operator-atlas"],
               body=status, headers=AS_JSON)  # fmt: skip
    for path in ("/api/channels", "/api/schedule", "/readyz"):
        await call("GET", path, 503)
    async with connect(ws_url) as client:  # a screen arriving meanwhile
        await client.send({"type": "ping"})
        await client.send({"type": "subscribe", "channels": ["room:oasis"]})
        await client.send({"type": "nonsense", "token": bearer["admin"]})
        with contextlib.suppress(TimeoutError):
            await client.until(lambda m: m["type"] == "error", timeout=3)
        call.seen.frames += [orjson.dumps(m).decode() for m in client.seen]
    redis.start()
    await _until_ready(call.url, ready=True)
    await call("POST", "/api/rooms/atlas/status", 200, auth=bearer["operator-atlas"],
               body=status, headers=AS_JSON)  # fmt: skip
    await call("GET", "/api/me", 401, auth=bearer["revoked"])


async def _leak_tokens(redis_url: str) -> dict[str, str]:
    """Valid tokens for every role, a revoked one, one never made, and a real id with another
    token's secret."""
    bus = Bus(redis_url)
    made: dict[str, str] = {}
    ids: dict[str, str] = {}
    try:
        for who, (role, rooms) in HOLDS.items():
            made[who], token = await tokens.create(bus, role, rooms, who)
            ids[who] = token.id
        made["revoked"], token = await tokens.create(bus, "admin", [], "revoked")
        await tokens.revoke(bus, token.id)
    finally:
        await bus.aclose()
    made["unknown"] = _right_shape_token()
    made["crossed"] = f"feed_{ids['moderator']}_{_secret_of(made['admin'])}"
    return made


async def test_no_secret_leaks_from_the_server(tmp_path: Path, feed_server: Servers) -> None:
    """A server on a Redis with a password, logging at debug level, through valid, invalid and
    revoked tokens, tokens in the wrong places, bad requests and a Redis outage: no token and
    not the password in its log, its HTTP answers or its websocket frames."""
    protected = RedisProcess(tmp_path / "r", port=free_port(), password=PASSWORD)
    protected.start()
    try:
        assert PASSWORD in protected.url
        env = {"FEED_LOG_LEVEL": "debug", "FEED_API_RATE": "9999"}
        server = feed_server(protected.url, env=env)
        made = await _leak_tokens(protected.url)
        hidden = {"the Redis password": PASSWORD}
        for who, secret in made.items():
            hidden[f"the {who} token"] = secret
            hidden[f"the secret of the {who} token"] = _secret_of(secret)

        seen = Seen()
        ready = asyncio.Event()
        listener = asyncio.create_task(_listen(server.ws_url, seen, ready))
        await asyncio.wait_for(ready.wait(), 5)
        bearer = {who: f"Bearer {secret}" for who, secret in made.items()}
        async with aiohttp.ClientSession() as http:
            call = Traffic(http, server.url, seen, bearer)
            await _valid_work(call)
            await _invalid_tokens(call)
            await _tokens_in_wrong_places(call)
            await _errors(call)
            await _outage(call, protected, server.ws_url)
            # The last status (after the outage) reaches the listening screen.
            deadline = time.monotonic() + 10
            while '"kind":"status"' not in (seen.frames[-1] if seen.frames else ""):
                assert time.monotonic() < deadline, "the last status never reached the screen"
                await asyncio.sleep(0.05)
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await listener
        server.stop()
        log = server.log()
    finally:
        protected.kill()

    # positive controls: the log is at debug level, named the Redis, and saw the outage
    assert ('"level":"debug"' in log or " DEBUG " in log) and "aiohttp.access" in log
    assert "redis://:***@127.0.0.1" in log
    assert "lost the Redis subscription" in log
    assert any('"type":"health"' in f for f in seen.frames)
    assert any('"kind":"status"' in f for f in seen.frames)
    assert any("redis://:***@" in answer for answer in seen.http)  # the 503s name the Redis
    _assert_absent(hidden, {"the server's log": log, **seen.everything()})


async def test_a_token_in_the_query_string_is_not_logged(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    secret, _ = await tokens.create(bus, "admin", [])
    await bus.aclose()
    seen = Seen()
    async with aiohttp.ClientSession() as http:
        assert await seen.call(http, f"{server.url}/api/me?token={secret}") == 401
        assert await seen.call(http, f"{server.url}/api/schedule?access_token={secret}") == 404
    async with connect(f"{server.ws_url}?token={secret}") as client:
        await client.send({"type": "ping"})
        seen.frames.append(orjson.dumps(await client.recv()).decode())
    server.stop()
    # The answers are clean (a positive control); only the log is not.
    _assert_absent({"the token": secret}, seen.everything())
    _assert_absent({"the token": secret}, {"the server's log": server.log()})


async def _raw_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_a_request_the_parser_rejects_does_not_log_or_echo_the_token(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    secret, _ = await tokens.create(bus, "admin", [])
    await bus.aclose()
    answer = await _raw_request(
        server.port,
        f"GET /api/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    server.stop()
    _assert_absent(
        {"the token": secret},
        {"the HTTP answer": answer.decode(errors="replace"), "the server's log": server.log()},
    )


def _feed(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    done = subprocess.run(
        feed_command(*args), capture_output=True, text=True, timeout=30, env=env or _env(),
        cwd=cwd, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


async def test_the_command_line_shows_no_secret(tmp_path: Path) -> None:
    protected = RedisProcess(tmp_path / "r", port=free_port(), password=PASSWORD)
    protected.start()
    try:
        bus = Bus(protected.url)
        made = [
            (await tokens.create(bus, role, rooms, f"{role} token"))[0]
            for role, rooms in [("admin", []), ("moderator", []), ("operator", ["atlas"])]
        ]
        await bus.aclose()
        hidden = {"the Redis password": PASSWORD}
        hidden |= {f"token {i}": t for i, t in enumerate(made)}
        hidden |= {f"secret {i}": t.split("_", 2)[2] for i, t in enumerate(made)}
        dead = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
        wrong = f"redis://:wrong-{PASSWORD}@127.0.0.1:{protected.port}/0"
        env = _env(FEED_REDIS_URL=protected.url)
        commands: list[tuple[tuple[str, ...], dict[str, str] | None, int]] = [
            (("token", "list", "--redis-url", protected.url), None, 0),
            (("token", "list"), env, 0),  # the URL from FEED_REDIS_URL
            (("publish", "status", "atlas", "live", "--redis-url", protected.url), None, 0),
            (("publish", "status", "atlas", "live", "--redis-url", dead), None, 1),
            (("token", "list", "--redis-url", dead), None, 1),
            (("token", "list"), _env(FEED_REDIS_URL=dead), 1),
            (("publish", "status", "atlas", "live", "--redis-url", wrong), None, 1),
            (("token", "revoke", "000000000000", "--redis-url", protected.url), None, 2),
        ]
        runs = [(_feed(*args, env=e, cwd=tmp_path), code) for args, e, code in commands]
    finally:
        protected.kill()
    listed = runs[0][0][1]
    assert all(t.split("_")[1] in listed for t in made)  # the ids are listed, not the secrets
    for (code, out, err), expected in runs:
        assert code == expected, err
        _assert_absent(hidden | {"the wrong password": f"wrong-{PASSWORD}"},
                       {"stdout": out, "stderr": err})  # fmt: skip
        if code:
            assert len(err.strip().splitlines()) == 1, err  # one line saying what is wrong


def _bad_url(shape: str) -> str:
    return shape.format(pw=PASSWORD, port=free_port())


BAD_URLS = [
    pytest.param("redis://:{pw}@127.0.0.1:{port}/0", id="nothing-listens"),
    pytest.param("http://:{pw}@127.0.0.1:{port}/0", id="wrong-scheme"),
    pytest.param("redis://:{pw}@127.0.0.1:{port}/zero", id="bad-db"),
    pytest.param("redis://:{pw}@127.0.0.1:{port}/0?socket_timeout=soon", id="bad-option"),
    pytest.param("redis://:{pw}@127.0.0.1:notaport/0", id="bad-port"),
    pytest.param("redis://user:{pw}@127.0.0.1:{port}/0", id="user-and-password"),
    pytest.param("rediss://:{pw}@127.0.0.1:{port}/0", id="tls"),
    *[
        pytest.param(
            "redis://:{pw}" + char + "x@127.0.0.1:{port}/0",
            id=f"password-with-{name}",
        )
        for char, name in (("?", "question-mark"), ("/", "slash"), ("#", "hash"))
    ],
]


@pytest.mark.parametrize("shape", BAD_URLS)
def test_a_bad_redis_url_does_not_show_its_password(tmp_path: Path, shape: str) -> None:
    url = _bad_url(shape)
    code, out, err = _feed("publish", "status", "atlas", "live", "--redis-url", url, cwd=tmp_path)
    assert code != 0
    _assert_absent({"the Redis password": PASSWORD}, {"stdout": out, "stderr": err})


@pytest.mark.parametrize(
    "shape",
    [
        "redis://:{pw}@127.0.0.1:notaport/0",
        "redis://:{pw}@127.0.0.1:99999/0",
        "redis://:{pw}@[::1:{port}/0",
    ],
)
def test_a_bad_redis_url_is_one_line_not_a_traceback(tmp_path: Path, shape: str) -> None:
    code, _, err = _feed(
        "publish", "status", "atlas", "live", "--redis-url", _bad_url(shape), cwd=tmp_path
    )
    assert code == 2, err  # bad input, said in one line
    assert "Traceback" not in err
    assert err.startswith(
        "feed publish: --redis-url: invalid value for redis_url: invalid Redis URL"
    )
    assert len(err.splitlines()) == 1, err


# ---- 3. what makes tokens safe ------------------------------------------------------------------


async def test_tokens_are_random(redis: RedisProcess) -> None:
    bus = Bus(redis.url)
    try:
        made = [(await tokens.create(bus, "moderator", []))[0] for _ in range(300)]
    finally:
        await bus.aclose()
    assert all(TOKEN_SHAPE.fullmatch(t) for t in made), made[:3]
    ids = [t.split("_")[1] for t in made]
    secrets_ = [_secret_of(t) for t in made]
    assert len(set(made)) == len(set(ids)) == len(set(secrets_)) == len(made)
    assert len({s[:8] for s in secrets_}) == len(made)  # not even a common 48-bit prefix
    raw = [base64.urlsafe_b64decode(s + "=") for s in secrets_]
    assert {len(r) for r in raw} == {32}  # 256 bits each
    # What the bits look like over 76 800 of them: half ones, every byte value in use...
    bits = "".join(f"{byte:08b}" for r in raw for byte in r)
    assert abs(bits.count("1") / len(bits) - 0.5) < 0.01
    bytes_seen = Counter(byte for r in raw for byte in r)
    assert len(bytes_seen) == 256
    # ...and close to 8 bits of entropy per byte (about 7.98 expected from 9 600 samples).
    total = sum(bytes_seen.values())
    entropy = -sum(n / total * math.log2(n / total) for n in bytes_seen.values())
    assert entropy > 7.9, entropy
    # No byte position is stuck: each takes many values across the tokens.
    assert min(len({r[i] for r in raw}) for i in range(32)) > 150


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _values(kind: str, value: Any) -> list[bytes]:
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in (*_values(kind, k), *_values(kind, v))]
    if isinstance(value, list | tuple | set):
        return [x for item in value for x in _values(kind, item)]
    return [str(value).encode()]


async def _everything_in(redis_url: str) -> dict[bytes, list[bytes]]:
    """Every key Redis holds, with every value in it, whatever its type."""
    client = aioredis.Redis.from_url(redis_url)
    found: dict[bytes, list[bytes]] = {}
    try:
        async for key in client.scan_iter(count=1000):
            kind = _text(await client.type(key))
            if kind == "string":
                value: Any = await client.get(key)
            elif kind == "hash":
                value = await client.hgetall(key)
            elif kind == "list":
                value = await client.lrange(key, 0, -1)
            elif kind == "set":
                value = await client.smembers(key)
            elif kind == "zset":
                value = await client.zrange(key, 0, -1, withscores=True)
            elif kind == "stream":
                value = await client.xrange(key)
            else:
                raise AssertionError(f"unexpected type {kind} for {key!r}")
            found[key] = _values(kind, value)
    finally:
        await client.aclose()
    return found


async def test_only_a_hash_of_the_secret_is_stored(
    redis: RedisProcess, feed_server: Servers
) -> None:
    """After tokens are made, used (rate counts, idempotent answers), revoked and listed, no
    key and no value in Redis, and no byte of its files on disk, holds a secret."""
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    made: list[str] = []
    try:
        for role, rooms in [("admin", []), ("moderator", []), ("operator", ["atlas"])] * 3:
            secret, _ = await tokens.create(bus, role, rooms, f"a {role}")
            made.append(secret)
        async with aiohttp.ClientSession() as http:
            for i, secret in enumerate(made):
                headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": f"k-{i}"}
                async with http.post(
                    server.url + "/api/rooms/atlas/status", json=STATUS, headers=headers
                ) as answer:
                    assert answer.status == 200
        revoked = made.pop()
        await tokens.revoke(bus, revoked.split("_")[1])
        records = {t.id: t for t in await tokens.list_all(bus)}
        stored = {k: orjson.loads(v) for k, v in (await _raw_tokens(redis.url)).items()}
    finally:
        await bus.aclose()
    everything = await _everything_in(redis.url)
    assert any(k.startswith(b"feed:rate:") for k in everything)  # they were used
    assert any(k.startswith(b"feed:idem:") for k in everything)
    for secret in [*made, revoked]:
        for needle in (secret, _secret_of(secret)):
            for key, values in everything.items():
                assert needle.encode() not in key
                assert all(needle.encode() not in v for v in values), key
    # The record holds the SHA-256 of the secret, and nothing else secret.
    for secret in made:
        token_id = secret.split("_")[1]
        assert token_id in records
        record = stored[token_id]
        assert set(record) == {"id", "role", "rooms", "name", "created", "hash"}
        assert record["hash"] == hashlib.sha256(_secret_of(secret).encode()).hexdigest()
    # At rest on disk too: the append-only file and everything else in Redis's folder.
    await asyncio.sleep(1.2)  # appendfsync everysec
    files = [p for p in redis.data_dir.rglob("*") if p.is_file()]
    assert any("appendonly" in p.name for p in files)
    assert any(b"feed:tokens" in p.read_bytes() for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in [*made, revoked]:
            assert _secret_of(secret).encode() not in data, path


async def _raw_tokens(redis_url: str) -> dict[str, bytes]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        raw = await client.hgetall("feed:tokens")
    finally:
        await client.aclose()
    return {_text(k): v if isinstance(v, bytes) else v.encode() for k, v in raw.items()}


def test_the_secret_is_compared_in_constant_time_in_the_source() -> None:
    """publisher/tokens.py's verify compares the hashes with hmac.compare_digest (or
    secrets.compare_digest), never with == or != (which stop at the first difference)."""
    tree = ast.parse(inspect.getsource(tokens.verify))
    calls = [
        ast.unparse(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    ]
    assert "hmac.compare_digest" in calls or "secrets.compare_digest" in calls, calls
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq | ast.Is | ast.IsNot | ast.In | ast.NotIn)
            for op in node.ops
        ):
            text = ast.unparse(node)
            assert not any(word in text for word in ("hash", "digest", "stored", "parts[2]")), text


async def test_every_verification_goes_through_one_constant_time_comparison(
    redis: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behaviour, not just source: each verification compares two SHA-256 digests with
    compare_digest, once, whether the id exists or not (so timing does not tell which ids
    exist), and its answer decides."""
    compared: list[tuple[Any, Any]] = []

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(tokens, "hmac", SimpleNamespace(compare_digest=spy))
    bus = Bus(redis.url)
    try:
        secret, token = await tokens.create(bus, "admin", [])
        other, _ = await tokens.create(bus, "moderator", [])
        token_id = token.id
        last = _secret_of(secret)[-1]
        off_by_one = f"feed_{token_id}_{_secret_of(secret)[:-1]}{'B' if last != 'B' else 'C'}"
        presented = [
            (secret, True),  # right
            (f"feed_{token_id}_{_secret_of(other)}", False),  # a real id, another's secret
            (off_by_one, False),  # the last character changed
            (f"feed_{secrets.token_hex(6)}_{_secret_of(secret)}", False),  # an id never made
        ]
        for value, valid in presented:
            compared.clear()
            if valid:
                assert (await tokens.verify(bus, value)).id == token_id
            else:
                with pytest.raises(Unauthorized):
                    await tokens.verify(bus, value)
            assert len(compared) == 1, value
            (a, b), hexdigest = compared[0], re.compile(r"[0-9a-f]{64}")
            assert isinstance(a, str) and isinstance(b, str)
            assert hexdigest.fullmatch(a) and hexdigest.fullmatch(b)
            assert b == hashlib.sha256(_secret_of(value).encode()).hexdigest()
    finally:
        await bus.aclose()
