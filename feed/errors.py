"""The project's errors, and the one place that maps them to HTTP statuses and websocket codes.

Every error a user can cause or meet derives from `FeedError` and also from the builtin it is
closest to, so callers that only know Python's vocabulary (`ValueError`, `ConnectionError`) still
catch them.
"""

from __future__ import annotations

import asyncio
from enum import IntEnum


class CloseCode(IntEnum):
    """Websocket close codes the server uses, and what a client should do on each.

    1000-1015 are RFC 6455 codes; 4000-4999 are ours. Codes in `RECONNECT` mean "come back and
    resume with your last (epoch, seq)"; the others mean "do not retry the same thing".
    """

    NORMAL = 1000  # the client closed first
    GOING_AWAY = 1001  # server shutting down or restarting: reconnect with backoff
    UNSUPPORTED = 1003  # binary frame sent where only JSON text is accepted
    ABNORMAL = 1006  # never sent: the connection dropped (network, heartbeat timeout)
    POLICY = 1008  # repeated invalid messages: fix the client before reconnecting
    TOO_BIG = 1009  # a frame over the size limit
    INTERNAL = 1011  # the server failed unexpectedly: reconnect with backoff
    SLOW = 4008  # the client fell too far behind: reconnect at once and resume


RECONNECT = frozenset(
    {CloseCode.GOING_AWAY, CloseCode.ABNORMAL, CloseCode.INTERNAL, CloseCode.SLOW}
)


class FeedError(Exception):
    """Root of the project's errors. `code` is the stable, machine-readable name; `field`
    names the input at fault, when there is one."""

    code = "feed_error"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidMessage(FeedError, ValueError):
    """Input that breaks the rules: a bad frame, field, status, channel or text."""

    code = "invalid"
    http_status = 422


class MalformedRequest(InvalidMessage):
    """A request body that cannot be read at all: not JSON, not an object, too large."""

    code = "malformed"
    http_status = 400


class ConfigError(FeedError, ValueError):
    """A setting that cannot work: a bad Redis URL, an unknown tz data source, an unreadable
    settings file. Found at start-up, before anything is served."""

    code = "config"
    http_status = 500


class LimitExceeded(FeedError, ValueError):
    """Input that is well formed but over a documented limit."""

    code = "limit"
    http_status = 413


class RequestTimeout(FeedError, TimeoutError):
    """A request whose body did not arrive in time (a slow client holds a connection)."""

    code = "timeout"
    http_status = 408


class Unauthorized(FeedError, PermissionError):
    """No token, or one that is unknown or revoked."""

    code = "unauthorized"
    http_status = 401


class Forbidden(FeedError, PermissionError):
    """A valid token whose role or rooms do not cover the request."""

    code = "forbidden"
    http_status = 403


class NotFound(FeedError, LookupError):
    code = "not_found"
    http_status = 404


class RateLimited(FeedError, RuntimeError):
    """Too many requests for one token; `retry_after` is in whole seconds."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(FeedError, ConnectionError):
    """Redis cannot be reached (or answered in a way we cannot use); retrying may help."""

    code = "unavailable"
    http_status = 503


class Conflict(FeedError, RuntimeError):
    """A change kept losing the race against concurrent changes to the same channel."""

    code = "conflict"
    http_status = 409


def error_body(error: FeedError) -> dict[str, dict[str, str | None]]:
    """The JSON body of every HTTP error."""
    return {"error": {"code": error.code, "message": error.message, "field": error.field}}


def raise_if_cancelled(cause: BaseException | None = None) -> None:
    """Raise CancelledError when the current task is being cancelled.

    Some libraries (redis-py) catch a cancellation and raise their own error instead, or return
    as if nothing happened; a loop that retries on errors would then outlive its shutdown.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from cause
