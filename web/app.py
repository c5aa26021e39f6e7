"""The aiohttp application: websocket endpoint, health, readiness, and JSON errors."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web, web_protocol
from prometheus_client import CollectorRegistry

from feed import loops, protocol
from feed.bus import Bus
from feed.clock import REAL, Clock
from feed.errors import (
    CloseCode,
    FeedError,
    Forbidden,
    MalformedRequest,
    RateLimited,
    RequestTimeout,
    Unauthorized,
    error_body,
)
from feed.hub import Hub
from feed.relay import Relay
from feed.settings import Settings, addresses, origins
from publisher.api import Publisher
from web import api, ics, metrics, presence, sse, ws
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
CORS: web.AppKey[frozenset[str]] = web.AppKey("cors")
METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics")
FOLLOWED: web.AppKey[metrics.FollowCollector] = web.AppKey("followed")


EXPIRY_EVERY = 1.0  # seconds between looks for expired announcements
MAX_UPLOAD = 32 * 1024 * 1024  # a program export; the largest real ones are about 1 MB
# Slow clients hold connections (issue 18 §4): aiohttp has no timeout of its own for reading a
# request's head, but it closes a connection that has not completed a request head this long
# after it opened or after the previous answer (its keep-alive timer, which it arms at the
# connection's start and does not move while bytes trickle in). So a head, a websocket upgrade
# included, arrives within this, or the connection is closed; an idle keep-alive also ends then.
HEAD_TIMEOUT = 10.0
# A body gets this long, plus a second for every BODY_MIN_RATE bytes received: a real upload
# on a slow network goes through, one that trickles is answered 408 and closed.
BODY_TIMEOUT = 10.0
BODY_MIN_RATE = 16 * 1024


def _answer_unparsable_requests_in_json() -> None:
    """aiohttp answers a request its HTTP parser refuses with plain text that quotes the bytes
    at fault (a broken Authorization header, token included) and logs them at ERROR. Answer
    it like every other error instead: JSON saying what is wrong, quoting nothing."""
    original = web_protocol.RequestHandler.handle_error
    if getattr(original, "feed", False):
        return

    def handle_error(
        self: web_protocol.RequestHandler,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400 or request.writer.output_size > 0:
            return original(self, request, status, exc, message)
        log.info("refused a request that is not valid HTTP from %s (%s)", request.remote,
                 type(exc).__name__)  # fmt: skip
        refused = MalformedRequest(
            "the request is not valid HTTP/1.1: check its request line and headers"
        )
        answer = web.json_response(error_body(refused), status=400)
        answer.force_close()
        return answer

    handle_error.feed = True  # type: ignore[attr-defined]
    web_protocol.RequestHandler.handle_error = handle_error  # type: ignore[method-assign]


def create_app(
    settings: Settings, redis_url: str, *, clock: Clock = REAL, demo: bool = False
) -> web.Application:
    """The application; `demo` also plays the demo program (see publisher/demo.py), on `clock`."""
    _answer_unparsable_requests_in_json()
    # CORS outermost: error answers carry its headers too, so pages can read why.
    app = web.Application(
        middlewares=[cors, json_errors, slow_bodies],
        client_max_size=MAX_UPLOAD,
        handler_args={"keepalive_timeout": HEAD_TIMEOUT},
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
    app[CORS] = origins(settings.cors_origins)
    app[api.RATE] = settings.api_rate
    app[api.VENUE_ZONE] = settings.venue_zone
    app.cleanup_ctx.append(_relay)
    app.cleanup_ctx.append(_publisher)
    app.cleanup_ctx.append(_presence)
    if demo:
        app.cleanup_ctx.append(_demo)
    app.on_shutdown.append(_going_away)
    # Every route answers an Expect it does not understand with a JSON 417, as the API does.
    get = functools.partial(app.router.add_get, expect_handler=api.expect)
    get("/healthz", healthz)
    get("/readyz", readyz)
    get("/ws", websocket)
    get("/sse", events, allow_head=False)  # a stream has no head of its own
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
    app.on_response_prepare.append(_security_headers)
    return app


STATIC = Path(__file__).resolve().parent / "static"
# Pages run only their own files: no inline script or style, no third party, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return page


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if response.status == 101:
        return  # a websocket's upgrade has no document to protect; its headers live as long as it
    # Screens run for days across deploys: they revalidate their files rather than guess.
    if request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-cache")
    elif request.path == "/api/me" or (
        request.path.startswith("/api/") and request.method != "GET"
    ):
        response.headers.setdefault("Cache-Control", "no-store")  # answers about a signed-in user
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")


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


def _parts(app: web.Application) -> ws.Parts:
    return ws.Parts(
        relay=app[RELAY],
        clients=app[CLIENTS],
        outbox=app[OUTBOX],
        gate=app[GATE],
        presence=app[presence.PRESENCE],
        settings=app[SETTINGS],
        clock=app[CLOCK],
        admission=app[ADMISSION],
    )


async def events(request: web.Request) -> web.StreamResponse:
    return await sse.handle(request, _parts(request.app))


async def websocket(request: web.Request) -> web.StreamResponse:
    return await ws.handle(request, _parts(request.app))


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error answer is JSON that says what is wrong, whatever raised it."""
    try:
        return await handler(request)
    except FeedError as exc:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else {}
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = 'Bearer realm="feed"'
        return web.json_response(error_body(exc), status=exc.http_status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = exc.text or ""
        if not text or text.startswith(str(exc.status)):  # aiohttp's default "404: Not Found"
            text = f"{exc.reason}: {request.method} {request.path}"
        code = exc.reason.lower().replace(" ", "_")
        body = {"error": {"code": code, "message": text, "field": None}}
        return web.json_response(body, status=exc.status, headers=_allow(exc))
    except ConnectionResetError:
        raise  # the client left: nobody to answer, nothing to report
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        message = "unexpected server error; it has been logged"
        body = {"error": {"code": "internal", "message": message, "field": None}}
        return web.json_response(body, status=500)


@web.middleware
async def slow_bodies(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A body that arrives slower than BODY_MIN_RATE after BODY_TIMEOUT fails its reader with
    RequestTimeout (408), and the connection closes after that answer."""
    body = request.content
    if not request.body_exists or body.is_eof():
        return await handler(request)
    loop = asyncio.get_running_loop()
    started = loop.time()

    def check() -> None:
        if body.is_eof():
            return
        allowed = started + BODY_TIMEOUT + body.total_bytes / BODY_MIN_RATE
        if loop.time() < allowed:
            timers.append(loop.call_at(allowed, check))
            return
        body.set_exception(
            RequestTimeout(
                f"the request body did not arrive in time ({body.total_bytes} bytes in"
                f" {loop.time() - started:.0f} s)"
            )
        )

    timers = [loop.call_at(started + BODY_TIMEOUT, check)]
    try:
        return await handler(request)
    except RequestTimeout as exc:
        body.feed_eof()  # the rest of it is not read: the connection closes after this answer
        late = web.json_response(error_body(exc), status=exc.http_status)
        late.force_close()
        return late
    finally:
        for timer in timers:
            timer.cancel()


CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
    "Access-Control-Max-Age": "600",
}


@web.middleware
async def cors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Pages of the origins in FEED_CORS_ORIGINS may call the API; no one else gets CORS."""
    origin = request.headers.get("Origin")
    allowed = request.app[CORS]
    if not request.path.startswith("/api/") or origin is None or not allowed:
        return await handler(request)
    ok = "*" in allowed or origin.rstrip("/").lower() in allowed
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if not ok:
            refused = Forbidden(f"pages of {origin!r} may not call this API (FEED_CORS_ORIGINS)")
            return web.json_response(error_body(refused), status=refused.http_status)
        preflight = web.Response(status=204, headers=CORS_HEADERS)
        preflight.headers["Access-Control-Allow-Origin"] = origin
        preflight.headers["Vary"] = "Origin"
        return preflight
    response = await handler(request)
    if ok:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "ETag, Retry-After"
        response.headers["Vary"] = "Origin"
    return response


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}
