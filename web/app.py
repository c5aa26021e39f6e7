"""The aiohttp application: its state, its routes, what starts and stops with it (the relay, the
publisher, presence, the expiry loop, the demo), and the health, readiness and metrics pages."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from feed import loops, protocol
from feed.bus import Bus
from feed.clock import REAL, Clock
from feed.errors import (
    CloseCode,
    FeedError,
)
from feed.hub import Hub
from feed.relay import Relay
from feed.settings import Settings, addresses, origins
from publisher.api import Publisher
from web import api, ics, metrics, middleware, presence, sse, ws
from web.admission import Admission
from web.client import Client
from web.gate import Gate
from web.outbox import Outbox

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
REDIS_URL = web.AppKey("redis_url", str)
RELAY = web.AppKey("relay", Relay)
CLIENTS: web.AppKey[set[Client]] = web.AppKey("clients")
OUTBOX: web.AppKey[Outbox] = web.AppKey("outbox")
ADMISSION: web.AppKey[Admission] = web.AppKey("admission")
GATE: web.AppKey[Gate] = web.AppKey("gate")
METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics")
FOLLOWED: web.AppKey[metrics.FollowCollector] = web.AppKey("followed")


EXPIRY_EVERY = 1.0  # seconds between looks for expired announcements
MAX_UPLOAD = 32 * 1024 * 1024  # a program export; the largest real ones are about 1 MB


def create_app(
    settings: Settings, redis_url: str, *, clock: Clock = REAL, demo: bool = False
) -> web.Application:
    """The application; `demo` also plays the demo program (see publisher/demo.py), on `clock`."""
    middleware.answer_unparsable_requests_in_json()
    # CORS outermost: error answers carry its headers too, so pages can read why.
    app = web.Application(
        middlewares=[middleware.cors, middleware.json_errors, middleware.slow_bodies],
        client_max_size=MAX_UPLOAD,
        handler_args={"keepalive_timeout": middleware.HEAD_TIMEOUT},
    )
    app[SETTINGS] = settings
    app[REDIS_URL] = redis_url
    app[CLOCK] = clock
    app[CLIENTS] = set()
    app[OUTBOX] = Outbox()
    app[GATE] = Gate(
        origins(settings.allowed_origins),
        settings.max_connections_per_ip,
        addresses(settings.trusted_proxies),
    )
    app[middleware.CORS] = origins(settings.cors_origins)
    app[api.RATE] = settings.api_rate
    app[api.VENUE_ZONE] = settings.venue_zone
    app.cleanup_ctx.append(_relay)
    app.cleanup_ctx.append(_publisher)
    app.cleanup_ctx.append(_presence)
    app.cleanup_ctx.append(_parts)
    if demo:
        app.cleanup_ctx.append(_demo)
    app.on_shutdown.append(_going_away)
    # Every route answers an Expect it does not understand with a JSON 417, as the API does.
    get = functools.partial(app.router.add_get, expect_handler=api.expect)
    get("/healthz", healthz)
    get("/readyz", readyz)
    # The streaming endpoints as they are: no wrapper frame of ours beside every connection (the
    # middlewares also hand /ws straight through; /sse streams are few, on the fallback path).
    get("/ws", ws.handle)
    get("/sse", sse.handle, allow_head=False)  # a stream has no head of its own
    get("/api/channels", channels)
    get("/metrics", metrics_page)
    app[FOLLOWED] = metrics.FollowCollector()
    app[METRICS] = metrics.registry(
        [
            metrics.FeedCollector(
                lambda: app.get(RELAY), app[CLIENTS], app[OUTBOX], lambda: app.get(ADMISSION)
            ),
            app[FOLLOWED],
        ]
    )
    api.add_routes(app)
    presence.add_routes(app)
    ics.add_routes(app)
    get("/screen/room/{room}", _page("screen-room.html"))
    get("/screen/hall", _page("screen-hall.html"))
    get("/console", _page("console.html"))
    get("/", _page("index.html"))
    # At the root, so the service worker may serve the attendees' page offline.
    get("/sw.js", _page("sw.js"))
    get("/manifest.webmanifest", _page("manifest.webmanifest"))
    app.router.add_static("/static/", STATIC, expect_handler=api.expect)
    app.on_response_prepare.append(middleware.security_headers)
    return app


STATIC = Path(__file__).resolve().parent / "static"


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return page


async def _relay(app: web.Application) -> AsyncIterator[None]:
    clients = app[CLIENTS]

    def on_health(live: bool) -> None:
        frame = protocol.health(live, app[CLOCK].ms())
        for client in clients:
            client.send(frame)

    bus = Bus(app[REDIS_URL], history=app[SETTINGS].history)
    relay = Relay(bus, Hub(app[CLOCK]), on_health)
    app[RELAY] = relay
    app[ADMISSION] = Admission(relay, app[SETTINGS].subscribe_rate)
    task = asyncio.create_task(relay.run(), name="feed-relay")
    yield
    await app[ADMISSION].aclose()
    await _cancel(task)
    await bus.aclose()


async def _publisher(app: web.Application) -> AsyncIterator[None]:
    """The publishing side inside the server: the HTTP API's changes, and announcement expiry."""
    settings = app[SETTINGS]
    pub = Publisher(
        app[REDIS_URL],
        history=settings.history,
        clock=app[CLOCK],
        min_replicas=settings.redis_min_replicas,
    )
    app[api.PUBLISHER] = pub
    expiry = asyncio.create_task(_expire(pub), name="feed-expiry")
    yield
    await _cancel(expiry)
    await pub.aclose()


async def _presence(app: web.Application) -> AsyncIterator[None]:
    """Viewer counts, screens and receipts, reported to Redis every few seconds."""
    watching = presence.Presence(app[api.PUBLISHER].bus, app[CLIENTS], app[RELAY].labelled)
    app[presence.PRESENCE] = watching
    task = asyncio.create_task(watching.run(), name="feed-presence")
    yield
    await _cancel(task)
    await watching.stop()


async def _demo(app: web.Application) -> AsyncIterator[None]:
    from publisher import demo  # noqa: PLC0415 - only the demo needs it

    task = asyncio.create_task(demo.drive(app[api.PUBLISHER], app[CLOCK]), name="feed-demo")
    yield
    await _cancel(task)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _parts(app: web.Application) -> AsyncIterator[None]:
    """What the websocket and SSE endpoints are served with, once everything in it exists."""
    app[ws.PARTS] = ws.Parts(
        relay=app[RELAY],
        clients=app[CLIENTS],
        outbox=app[OUTBOX],
        gate=app[GATE],
        presence=app[presence.PRESENCE],
        settings=app[SETTINGS],
        clock=app[CLOCK],
        admission=app[ADMISSION],
    )
    yield


async def _expire(pub: Publisher) -> None:
    """Announcements leave every screen when they expire, with no one acting: the expiry is
    published as an event (once, whichever server gets to it first)."""
    await loops.every(EXPIRY_EVERY, pub.expire_due, what="announcement expiry", log=log)


async def _going_away(app: web.Application) -> None:
    clients = app[CLIENTS]
    for client in list(clients):
        client.close(CloseCode.GOING_AWAY, "server shutting down")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _writes(relay: Relay) -> dict[str, str]:
    """Whether Redis takes writes. A Redis that refuses them (out of memory, a read-only
    replica) still lets every screen be served, so readiness does not depend on it; but every
    change fails until it takes writes again, and operators must hear of it."""
    if relay.writable is None:
        return {"writes": "unknown"}
    if relay.writable:
        return {"writes": "accepted"}
    return {
        "writes": "refused",
        "writes_refused": relay.writes_refused,  # Redis's own words
        "writes_detail": f"Redis refuses writes ({relay.writes_refused}): screens are still"
        " served, but no status, announcement or import can be published",
    }


async def readyz(request: web.Request) -> web.Response:
    relay = request.app[RELAY]
    if relay.live:
        return web.json_response({"ready": True, "redis": "subscribed", **_writes(relay)})
    if relay.subscribed:
        detail = "subscribed to Redis; catching up on missed events"
    else:
        detail = "not subscribed to Redis; retrying with backoff"
    return web.json_response(
        {
            "ready": False,
            "redis": "catching-up" if relay.subscribed else "unavailable",
            "detail": detail,
            **_writes(relay),
        },
        status=503,
    )


async def channels(request: web.Request) -> web.Response:
    """The channels that exist in Redis: `venue` and every room published to or read."""
    return web.json_response({"channels": await request.app[RELAY].bus.channels()})


async def metrics_page(request: web.Request) -> web.Response:
    """Prometheus's text format. Meant for the monitoring network: block it at the proxy."""
    try:  # the program follower's state, if one runs; a Redis away only leaves it out
        request.app[FOLLOWED].state = await request.app[api.PUBLISHER].follow_state()
    except FeedError:
        request.app[FOLLOWED].state = None
    return web.Response(
        body=metrics.render(request.app[METRICS]),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )
