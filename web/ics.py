"""`GET /api/rooms/{room}/calendar.ics`: a room's sessions for calendar apps (feed.calendar)."""

from __future__ import annotations

import hashlib

import orjson
from aiohttp import web

from feed import calendar, keys
from feed.errors import NotFound
from web import api


async def get_calendar(request: web.Request) -> web.Response:
    room_id = keys.room_id(request.match_info["room"])
    bus = request.app[api.PUBLISHER].bus
    raw, _, _ = await bus.program()
    if raw is None:
        raise NotFound("no program has been imported yet: `feed schedule import FILE`")
    program = orjson.loads(raw)
    room = next((r for r in program["rooms"] if r["id"] == room_id), None)
    if room is None:
        raise NotFound(f"no room {room_id!r} in the program")
    body = calendar.render(program["conference"], room, await bus.calendar()).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={**headers, "Content-Disposition": f'inline; filename="{room_id}.ics"'},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/rooms/{room}/calendar.ics", get_calendar, expect_handler=api.expect)
