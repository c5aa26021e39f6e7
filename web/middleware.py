"""What every request goes through, whatever its route: error answers in JSON, slow requests cut
off, CORS for the API, and the security headers of every answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web, web_protocol
from aiohttp.typedefs import Handler, Middleware

from feed.errors import (
    FeedError,
    Forbidden,
    MalformedRequest,
    RateLimited,
    RequestTimeout,
    Unauthorized,
    error_body,
)

log = logging.getLogger(__name__)

CORS: web.AppKey[frozenset[str]] = web.AppKey("cors")  # FEED_CORS_ORIGINS, parsed

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


def answer_unparsable_requests_in_json() -> None:
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


# Pages run only their own files: no inline script or style, no third party, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
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


WEBSOCKET = "/ws"


def passing_websockets(
    wrapped: Callable[[web.Request, Handler], Awaitable[web.StreamResponse]],
) -> Middleware:
    """`wrapped`, except on the websocket endpoint, whose handler is awaited as it is. A
    middleware's frame lives as long as the request it wraps, and a websocket's request lives as
    long as the connection: tens of thousands of them, each carrying three idle frames, cost
    about a kilobyte per connection (docs/performance.md). The websocket handler answers its own
    refusals (`error_response`); it reads no body and is not part of the API's CORS."""

    @web.middleware
    def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if request.path == WEBSOCKET:
            return handler(request)
        return wrapped(request, handler)

    return middleware


def error_response(exc: FeedError) -> web.Response:
    """The JSON answer to one of our errors, with the headers its status calls for."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="feed"'
    return web.json_response(error_body(exc), status=exc.http_status, headers=headers)


def http_error_response(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (404, 405, a websocket request without an upgrade...) in JSON."""
    text = exc.text or ""
    if not text or text.startswith(str(exc.status)):  # aiohttp's default "404: Not Found"
        text = f"{exc.reason}: {request.method} {request.path}"
    code = exc.reason.lower().replace(" ", "_")
    body = {"error": {"code": code, "message": text, "field": None}}
    return web.json_response(body, status=exc.status, headers=_allow(exc))


@passing_websockets
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answer is JSON that says what is wrong, whatever raised it."""
    try:
        return await handler(request)
    except FeedError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error_response(request, exc)
    except ConnectionResetError:
        raise  # the client left: nobody to answer, nothing to report
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        message = "unexpected server error; it has been logged"
        body = {"error": {"code": "internal", "message": message, "field": None}}
        return web.json_response(body, status=500)


@passing_websockets
async def slow_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
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


@passing_websockets
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
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
