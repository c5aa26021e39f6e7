"""Issue 18 §4: slow requests do not hold connections. An anonymous attacker opens raw sockets
and sends a request's head, a websocket upgrade or a body a little at a time; the server closes
each within its bound, while a legitimate client is served throughout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson

from feed.bus import Bus
from feed.embedded import RedisProcess
from publisher import tokens
from tests.conftest import FeedServer, get
from web.middleware import BODY_TIMEOUT, HEAD_TIMEOUT

Servers = Callable[..., FeedServer]
DRIP = 5.0  # seconds between the attacker's pieces, as in the issue
SLACK = 3.0  # event-loop and scheduling leeway on a shared machine


async def _drip(port: int, first: bytes, piece: bytes) -> tuple[float, bytes]:
    """Send `first`, then `piece` every DRIP seconds until the server closes the connection;
    returns how long the connection lived and what the server sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    got = b""
    writer.write(first)
    try:
        while time.monotonic() - started < HEAD_TIMEOUT + BODY_TIMEOUT + 4 * DRIP:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), DRIP)
            except TimeoutError:
                writer.write(piece)  # still open: one more piece
                continue
            if not chunk:
                break
            got += chunk
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started, got


async def test_slow_heads_upgrades_and_bodies_are_cut_off(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    moderator, _ = await tokens.create(bus, "moderator", [], "desk")
    await bus.aclose()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
    )
    body = (
        b"POST /api/announcements HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + moderator.encode() + b"\r\nContent-Length: 4000\r\n\r\n{"
    )
    attackers = [
        *(_drip(server.port, head, b"X-Slow: 1\r\n") for _ in range(20)),
        *(_drip(server.port, upgrade, b"X-Slow: 1\r\n") for _ in range(20)),
        *(_drip(server.port, body, b" ") for _ in range(5)),
        _drip(server.port, b"", b"G"),  # connects, then says (almost) nothing
    ]
    running = asyncio.gather(*attackers)
    # Meanwhile a legitimate client is served as usual.
    for _ in range(5):
        status, answer = await asyncio.to_thread(get, server.url + "/healthz")
        assert (status, answer) == (200, {"status": "ok"})
        await asyncio.sleep(1)
    results = await running
    heads, upgrades, bodies, silent = results[:20], results[20:40], results[40:45], results[45]
    for lived, said in [*heads, *upgrades, silent]:
        assert lived < HEAD_TIMEOUT + SLACK, lived
        assert said == b""  # closed before a head was complete: nothing to answer
    for lived, said in bodies:
        assert lived < BODY_TIMEOUT + DRIP + SLACK, lived
        status_line, _, rest = said.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 408 Request Timeout", said[:200]
        error = orjson.loads(rest.partition(b"\r\n\r\n")[2])["error"]
        assert error["code"] == "timeout" and "did not arrive in time" in error["message"]
        assert b"Connection: close" in rest
    assert moderator not in server.log()
