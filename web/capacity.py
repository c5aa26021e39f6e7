"""The server's own capacity: as many connections as its open-file limit allows, with room kept
for everything else it needs (Redis connections, files, the accept itself).

A process here may hold at most so many files, a hard limit even root cannot raise. At that limit
asyncio's accept loop fails on every pending connection, logs each failure with a traceback, and
tries again a second later: measured, about a thousand tracebacks a second, and a process busy
with them instead of its clients. So the server counts its connections and, at its cap, answers a
new one at once with 503 and `Retry-After` (clients reconnect with backoff and resume), says so
once per interval, and counts it in /metrics. Should the limit be met all the same (files opened
elsewhere), the accept failures are counted and logged once per interval, not once each.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

RESERVE_MIN = 64  # files kept for Redis, logs and the like, whatever the limit
RESERVE_SHARE = 0.05  # ...or this share of the limit, if more
LOG_EVERY = 10.0  # seconds between two lines about the same trouble
REFUSAL_GRACE = 1.0  # seconds a refused connection may take to read its 503
_ACCEPT_ERRORS = ("socket.accept() out of system resource",)


def cap_for(limit: int) -> int:
    """How many client connections a process with `limit` open files may hold."""
    return max(1, limit - max(RESERVE_MIN, int(limit * RESERVE_SHARE)))


@dataclass
class Capacity:
    """The connection cap and what happened at it, read by /metrics."""

    cap: int
    reserve: int = RESERVE_MIN  # files kept beyond the cap
    refused: int = 0  # connections answered 503 (or reset) at the cap
    refusing: int = 0  # refused connections still open, reading their 503
    accept_errors: int = 0  # accepts the system refused (out of files or memory)
    _said: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_limit(cls) -> Capacity:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
        cap = cap_for(limit)
        return cls(cap, reserve=limit - cap)

    def say(self, what: str, message: str, *args: object) -> None:
        """Log `message` at most once per LOG_EVERY seconds for each kind of trouble."""
        now = time.monotonic()
        if now - self._said.get(what, -LOG_EVERY) >= LOG_EVERY:
            self._said[what] = now
            log.warning(message, *args)

    def factory(
        self, make: Callable[[], asyncio.BaseProtocol], connections: Callable[[], int]
    ) -> Callable[[], asyncio.BaseProtocol]:
        """The protocol factory to listen with: `make`'s protocol below the cap, a 503 at it."""

        def protocol() -> asyncio.BaseProtocol:
            if connections() < self.cap:
                return make()
            self.refused += 1
            self.say(
                "cap",
                "at capacity: %d connections (the open-file limit allows %d); answering new"
                " ones 503 (%d so far)",
                connections(),
                self.cap,
                self.refused,
            )
            # Each 503 holds a file for a moment: beyond half the reserve, a refusal is a reset
            # (the client reconnects all the same), so refusing never costs the files it keeps.
            return _Refusal(self, answer=self.refusing < self.reserve // 2)

        return protocol

    def exception_handler(
        self, previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None
    ) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]:
        """A loop exception handler that turns accept failures into a count and a line per
        interval; everything else goes where it went before."""

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> object:
            if context.get("message") in _ACCEPT_ERRORS:
                self.accept_errors += 1
                exc = context.get("exception")
                self.say(
                    "accept",
                    "the system refuses new connections (%s); %d refused so far, retrying",
                    exc,
                    self.accept_errors,
                )
                return None
            if previous is not None:
                return previous(loop, context)
            loop.default_exception_handler(context)
            return None

        return handle


_BODY = orjson.dumps(
    {
        "error": {
            "code": "unavailable",
            "message": "the server is at capacity; try again in a moment",
            "field": None,
        }
    }
)
_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 2\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


class _Refusal(asyncio.Protocol):
    """Answers 503 at once and closes: the request is not read, let alone served."""

    def __init__(self, capacity: Capacity, *, answer: bool) -> None:
        self.capacity = capacity
        self.answer = answer
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.answer:
            transport.abort()
            return
        self.capacity.refusing += 1
        transport.write(_ANSWER)
        if transport.can_write_eof():
            transport.write_eof()
        # Closing at once, with the request unread, would reset the connection and may lose the
        # answer; a moment to read it, then the file is given back whatever the client does.
        self.timer = asyncio.get_running_loop().call_later(REFUSAL_GRACE, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not served

    def eof_received(self) -> bool:
        self.transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.capacity.refusing -= 1


class CapacityCollector(Collector):
    """/metrics: the cap, and the connections refused at it or by the system."""

    def __init__(self, capacity: Capacity, connections: Callable[[], int]) -> None:
        self._capacity = capacity
        self._connections = connections

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "feed_connection_cap",
            "Connections this process holds at most (its open-file limit less a reserve)",
            value=self._capacity.cap,
        )
        yield GaugeMetricFamily(
            "feed_http_connections", "Open HTTP connections, websockets included",
            value=self._connections(),
        )  # fmt: skip
        yield CounterMetricFamily(
            "feed_connections_refused",
            "Connections answered 503 at once because the process was at its cap",
            value=self._capacity.refused,
        )
        yield CounterMetricFamily(
            "feed_accept_errors",
            "Connections the system refused to accept (out of files or memory)",
            value=self._capacity.accept_errors,
        )
