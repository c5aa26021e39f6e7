"""Calendars for calendar apps (feed.calendar): `GET /api/rooms/{room}/calendar.ics`, a room's
sessions, and `GET /api/calendar.ics?session=ID&...`, the sessions a phone picked (a favourite,
"my day"), each event exactly as its room's calendar has it."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web

from feed import calendar, keys
from feed.errors import InvalidMessage, LimitExceeded, NotFound
from feed.models import visible
from web import api

MAX_SESSIONS = 200  # a phone's favourites; the address stays under aiohttp's 8 KiB line
MAX_SESSION_ID = 200
MAX_NAME = 100


async def _program(request: web.Request) -> dict[str, Any]:
    raw, _, _ = await request.app[api.PUBLISHER].bus.program()
    if raw is None:
        raise NotFound("no program has been imported yet: `feed schedule import FILE`")
    program: dict[str, Any] = orjson.loads(raw)
    return program


def _answer(request: web.Request, body: bytes, filename: str) -> web.Response:
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={**headers, "Content-Disposition": f'inline; filename="{filename}"'},
    )


async def get_calendar(request: web.Request) -> web.Response:
    room_id = keys.room_id(request.match_info["room"])
    program = await _program(request)
    room = next((r for r in program["rooms"] if r["id"] == room_id), None)
    if room is None:
        raise NotFound(f"no room {room_id!r} in the program")
    ledger = await request.app[api.PUBLISHER].bus.calendar()
    body = calendar.render(program["conference"], room, ledger).encode()
    return _answer(request, body, f"{room_id}.ics")


def _wanted(request: web.Request) -> tuple[list[str], str]:
    ids = list(dict.fromkeys(request.query.getall("session", [])))
    if not ids:
        raise InvalidMessage("name at least one session: ?session=ID", field="session")
    if len(ids) > MAX_SESSIONS:
        raise LimitExceeded(f"at most {MAX_SESSIONS} sessions per calendar", field="session")
    for sid in ids:
        if not sid or len(sid) > MAX_SESSION_ID:
            raise InvalidMessage(f"a session id has 1-{MAX_SESSION_ID} characters", field="session")
    name = request.query.get("name", "Favourites")
    if not visible(name) or len(name) > MAX_NAME:
        raise InvalidMessage(f"name: 1-{MAX_NAME} characters, some visible", field="name")
    return ids, name


async def get_sessions_calendar(request: web.Request) -> web.Response:
    ids, name = _wanted(request)
    program = await _program(request)
    ledger = await request.app[api.PUBLISHER].bus.calendar()
    unknown = [sid for sid in ids if sid not in ledger]
    if unknown:
        shown = ", ".join(repr(sid) for sid in unknown[:5])
        raise NotFound(f"no session {shown} in this program, now or before", field="session")
    rooms = {r["id"]: r["name"] for r in program["rooms"]}
    body = calendar.render_sessions(program["conference"], rooms, ledger, ids, name).encode()
    return _answer(request, body, "sessions.ics")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/rooms/{room}/calendar.ics", get_calendar, expect_handler=api.expect)
    app.router.add_get("/api/calendar.ics", get_sessions_calendar, expect_handler=api.expect)
