"""The HTTP API for operators, moderators and admins, described in web/openapi.json.

Every change goes through the same `Publisher` as `feed publish`: one path into Redis. Checks
come in a fixed order: 401 without a valid token, 429 over the token's rate, 403 outside its
role or rooms (before the body is read), then 400/422 for the body, 503 when Redis fails.
"""

from __future__ import annotations

import gzip
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib import resources
from typing import Any

import orjson
from aiohttp import HttpVersion11, web

from feed import keys
from feed.errors import (
    Conflict,
    InvalidMessage,
    MalformedRequest,
    NotFound,
    RateLimited,
    Unauthorized,
)
from publisher.api import Publisher
from publisher.tokens import Token, verify

PUBLISHER = web.AppKey("publisher", Publisher)
RATE = web.AppKey("rate", int)
VENUE_ZONE: web.AppKey[str | None] = web.AppKey("venue_zone")

IDEMPOTENCY_TTL = 24 * 3600
MAX_IDEMPOTENCY_KEY = 200
MAX_JSON_BODY = 256 * 1024
MAX_TITLE = 200  # the `title` of an import, as web/openapi.json says
_OPENAPI = resources.files("web").joinpath("openapi.json").read_bytes()


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi, expect_handler=expect)
    app.router.add_get("/api/schedule", get_schedule, expect_handler=expect)
    app.router.add_get("/api/schedule/follow", get_follow, expect_handler=expect)
    app.router.add_get("/api/me", get_me, expect_handler=expect)
    app.router.add_post("/api/schedule", post_schedule, expect_handler=expect)
    app.router.add_post("/api/rooms/{room}/status", post_status, expect_handler=expect)
    app.router.add_post("/api/announcements", post_announcement, expect_handler=expect)
    app.router.add_delete("/api/announcements/{id}", delete_announcement, expect_handler=expect)


async def expect(request: web.Request) -> web.StreamResponse | None:
    """The `Expect` header, answered before the handler and its middlewares run. As aiohttp's
    own handler: HTTP/1.1 only, `100-continue` gets its interim answer; but any other
    expectation gets 417 as a JSON error like every other answer, not aiohttp's plain text."""
    if request.version != HttpVersion11:
        return None
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer itself has not started
        return None
    message = "the only expectation understood is Expect: 100-continue"
    body = {"error": {"code": "expectation_failed", "message": message, "field": None}}
    return _json(body, 417)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_OPENAPI, content_type="application/json")


# ---- who is asking --------------------------------------------------------------------------


async def _caller(request: web.Request) -> Token:
    """The token of the request (401), within its rate (429)."""
    pub = request.app[PUBLISHER]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value and not (value.isascii() and value.isprintable()):
        # Tokens are printable ASCII; bytes that are not UTF-8 reach us as lone surrogates,
        # which cannot even be hashed.
        raise Unauthorized("this is not a feed token")
    token = await verify(pub.bus, value if scheme.lower() == "bearer" else None)
    limit = request.app[RATE]
    window = int(time.time() // 60)
    if await pub.bus.hit(keys.rate_key(token.id, window), ttl=120) > limit:
        retry = 60 - int(time.time()) % 60
        raise RateLimited(
            f"more than {limit} requests in a minute with this token; retry in {retry} s",
            retry_after=retry,
        )
    return token


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise MalformedRequest("send a JSON object with Content-Type: application/json")
    if (request.content_length or 0) > MAX_JSON_BODY:
        raise MalformedRequest(f"the body is over {MAX_JSON_BODY} bytes")
    raw = await _read(request)
    if len(raw) > MAX_JSON_BODY:
        raise MalformedRequest(f"the body is over {MAX_JSON_BODY} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedRequest("the body must be a JSON object")
    return body


async def _read(request: web.Request) -> bytes:
    """The whole body, however it was cut on the way; 400 when it cannot be read: a chunked
    encoding that breaks its own rules, a `Content-Encoding` whose data does not decompress, a
    client gone before the end of its body (nobody reads that answer, but no error is logged)."""
    try:
        return await request.read()
    except web.RequestPayloadError as exc:
        cause = exc.__cause__ or exc
        reason = getattr(cause, "message", None) or str(cause) or type(cause).__name__
        raise MalformedRequest(f"the body cannot be read: {reason}") from None
    except ConnectionResetError:
        raise MalformedRequest("the body ended early: the connection was closed") from None


def _only(body: dict[str, Any], *allowed: str) -> None:
    for name in body:
        if name not in allowed:
            raise InvalidMessage(
                f"unknown field {name!r}; expected {', '.join(allowed)}", field=name
            )


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (
        0 < len(key) <= MAX_IDEMPOTENCY_KEY and key.isascii() and key.isprintable()
    ):
        raise MalformedRequest(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )
    return key


async def _once(
    request: web.Request,
    token: Token,
    body: dict[str, Any],
    act: Callable[[], Awaitable[tuple[int, Any]]],
) -> web.Response:
    """Run a change once per Idempotency-Key (per token, method and path): a retry gets the
    first answer back instead of a second change; the same key with another body is refused."""
    key = _idempotency_key(request)
    if key is None:
        status, answer = await act()
        return _json(answer, status)
    bus = request.app[PUBLISHER].bus
    stored_key = keys.idempotency_key(token.id, f"{request.method} {request.path} {key}")
    fingerprint = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    pending = orjson.dumps({"fingerprint": fingerprint, "pending": True})
    if not await bus.remember(stored_key, pending, IDEMPOTENCY_TTL, first=True):
        stored = orjson.loads(await bus.remembered(stored_key) or b"{}")
        if stored.get("fingerprint") != fingerprint:
            raise InvalidMessage(
                "this Idempotency-Key was used with another body; use a new key",
                field="Idempotency-Key",
            )
        if stored.get("pending"):
            raise Conflict("a request with this Idempotency-Key is still running; retry shortly")
        return _json(stored["body"], stored["status"], {"Idempotent-Replayed": "true"})
    try:
        status, answer = await act()
    except BaseException:
        # Not done: a retry with the same key runs again, and finishes what this one began
        # (announcements take their id from the key, so a second run replaces, not repeats).
        await bus.forget(stored_key)
        raise
    done = {"fingerprint": fingerprint, "status": status, "body": answer}
    await bus.remember(stored_key, orjson.dumps(done), IDEMPOTENCY_TTL)
    return _json(answer, status)


def _change_id(token: Token, key: str | None) -> str | None:
    """The change id of a request with an Idempotency-Key: a retry of a change Redis made but
    could not confirm (too few replicas answered in time) finds it made, instead of making it
    a second time."""
    if key is None:
        return None
    return hashlib.sha256(f"change {token.id} {key}".encode()).hexdigest()[:16]


async def _program_rooms(pub: Publisher) -> set[str] | None:
    """The room ids of the imported program; None while none is imported (any id goes)."""
    return await pub.bus.program_rooms()


def _room_in(known: set[str] | None, room: object, field: str) -> str:
    """A room named in a body: a valid id, of the program when there is one (422 if not)."""
    if not isinstance(room, str):
        raise InvalidMessage(f"{field} must hold room ids, not {room!r}", field=field)
    try:
        keys.room_id(room)
    except InvalidMessage as exc:
        raise InvalidMessage(exc.message, field=field) from None
    if known is not None and room not in known:
        raise InvalidMessage(f"no room {room!r} in the program", field=field)
    return room


# ---- endpoints ------------------------------------------------------------------------------


async def get_me(request: web.Request) -> web.Response:
    """What the presented token may do: the console signs in with it."""
    token = await _caller(request)
    return _json({"id": token.id, "role": token.role.value, "rooms": list(token.rooms),
                  "name": token.name})  # fmt: skip


async def post_status(request: web.Request) -> web.Response:
    token = await _caller(request)
    room = request.match_info["room"]
    token.check_status(room)
    pub = request.app[PUBLISHER]
    known = await _program_rooms(pub)
    keys.room_id(room)
    if known is not None and room not in known:
        raise NotFound(f"no room {room!r} in the program")
    body = await _body(request)
    _only(body, "status", "delay_min", "session", "moved_to")
    if body.get("moved_to") is not None:
        _room_in(known, body["moved_to"], "moved_to")
    change_id = _change_id(token, _idempotency_key(request))

    async def act() -> tuple[int, Any]:
        try:
            done = await pub.status_of_program_room(
                room,
                body.get("status"),  # type: ignore[arg-type]  # validated by the publisher
                delay=_whole(body.get("delay_min", 0)),
                session=body.get("session"),
                moved_to=body.get("moved_to"),
                change_id=change_id,
            )
        except InvalidMessage as exc:
            if exc.field == "delay":
                exc.field = "delay_min"
            raise
        return 200, {"channel": done.channel, "epoch": done.epoch, "seq": done.seq}

    return await _once(request, token, body, act)


def _whole(value: Any) -> Any:
    """A JSON number without a fraction is a whole number however it is written (`10.0`, `1e1`):
    JSON Schema's `integer` accepts them, and so do we. Anything else goes on to be judged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _instant(value: object, field: str) -> int | None:
    """An ISO 8601 time with an offset, as Unix milliseconds."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidMessage(
            f"{field} must be an ISO 8601 time with an offset, like 2019-04-17T10:30:00+01:00",
            field=field,
        )
    return int(when.timestamp() * 1000)


async def post_announcement(request: web.Request) -> web.Response:
    token = await _caller(request)
    token.check_announce()
    pub = request.app[PUBLISHER]
    body = await _body(request)
    _only(body, "text", "rooms", "priority", "expires_at", "id")
    rooms = body.get("rooms", [])
    if rooms is None:
        rooms = []
    if not isinstance(rooms, list):
        raise InvalidMessage("rooms must be a list of room ids (empty for everyone)", field="rooms")
    known = await _program_rooms(pub)
    for room in rooms:
        _room_in(known, room, "rooms")
    expires_at = _instant(body.get("expires_at"), "expires_at")

    announcement_id = body.get("id")
    key = _idempotency_key(request)
    if announcement_id is None and key is not None:
        # Derived from the key: a retry after a failure halfway through the rooms replaces
        # what the first attempt posted instead of posting it twice.
        announcement_id = hashlib.sha256(f"{token.id} {key}".encode()).hexdigest()[:16]

    async def act() -> tuple[int, Any]:
        data = await pub.announce(
            body.get("text"),  # type: ignore[arg-type]  # validated by the publisher
            rooms=rooms,
            priority=body.get("priority", "info"),
            expires_at=expires_at,
            announcement_id=announcement_id,
            change_id=_change_id(token, key),
        )
        return 201, {"id": data["id"], "announcement": data}

    return await _once(request, token, body, act)


async def delete_announcement(request: web.Request) -> web.Response:
    token = await _caller(request)
    token.check_announce()
    announcement_id = request.match_info["id"]
    channels = await request.app[PUBLISHER].retract(announcement_id)
    return _json({"id": announcement_id, "channels": channels})


async def get_schedule(request: web.Request) -> web.Response:
    bus = request.app[PUBLISHER].bus
    wanted = {
        tag.strip().removeprefix("W/")
        for tag in request.headers.get("If-None-Match", "").split(",")
    }
    # A phone that has the program asks again with its ETag: answered from the ETag alone,
    # without reading the program (a megabyte for a big one).
    etag = await bus.program_etag() if wanted - {""} else None
    raw = None
    if etag is None:
        raw, etag, _ = await bus.program()
    if etag is None:
        raise NotFound("no program has been imported yet: `feed schedule import FILE`")
    quoted = f'"{etag}"'
    headers = {"ETag": quoted, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if quoted in wanted or "*" in wanted:
        return web.Response(status=304, headers=headers)
    if raw is None:
        raw, etag, _ = await bus.program()
        if raw is None or etag is None:
            raise NotFound("no program has been imported yet: `feed schedule import FILE`")
        headers["ETag"] = f'"{etag}"'
    # A phone's first load on a slow network is mostly this (1,000 sessions: 1.2 MB, 0.2 MB
    # gzipped; docs/performance.md), so it goes compressed, compressed once per version.
    if "gzip" in request.headers.get("Accept-Encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        raw = _gzipped(etag, raw)
    return web.Response(body=raw, content_type="application/json", headers=headers)


_GZIPPED: dict[str, bytes] = {}  # the current version's compressed program, by its ETag


def _gzipped(etag: str, raw: bytes) -> bytes:
    """Compressed once per version: looked up by the ETag, not by hashing the program again."""
    found = _GZIPPED.get(etag)
    if found is None:
        _GZIPPED.clear()
        found = _GZIPPED[etag] = gzip.compress(raw, compresslevel=6, mtime=0)
    return found


async def get_follow(request: web.Request) -> web.Response:
    """The program follower's state (`feed schedule follow`), for the staff's console."""
    (await _caller(request)).check_staff()
    state = await request.app[PUBLISHER].follow_state()
    if state is None:
        raise NotFound(
            "no `feed schedule follow` has reported lately: the program is imported by hand"
        )
    return _json(state)


async def post_schedule(request: web.Request) -> web.Response:
    token = await _caller(request)
    token.check_admin()
    title = request.query.get("title")
    if title is not None and len(title) > MAX_TITLE:
        raise InvalidMessage(f"title must be at most {MAX_TITLE} characters", field="title")
    strict = request.query.get("strict", "false").lower()
    if strict not in ("true", "false", "1", "0"):
        raise InvalidMessage("strict must be true or false", field="strict")
    data = await _read(request)
    zone = request.query.get("zone") or request.app[VENUE_ZONE]
    result = await request.app[PUBLISHER].import_program(
        data,
        source="the request body",
        venue_zone=zone,
        title=title,
        strict=strict in ("true", "1"),
    )
    return _json(result)


# For the API's other modules (web.presence): the same token check and JSON answers.
caller = _caller
answer = _json
