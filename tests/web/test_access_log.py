"""The access log: a line per HTTP request; a websocket session only at debug level."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import websockets

from feed.embedded import RedisProcess
from tests.conftest import FeedServer, get

Servers = Callable[..., FeedServer]


@pytest.mark.parametrize(("level", "sessions_logged"), [("info", False), ("debug", True)])
async def test_websocket_sessions_are_access_log_lines_only_at_debug_level(
    redis: RedisProcess, feed_server: Servers, level: str, *, sessions_logged: bool
) -> None:
    server = feed_server(redis.url, "--log-level", level)
    async with websockets.connect(server.ws_url) as ws:
        await ws.recv()  # hello
    assert get(server.url + "/api/openapi.json", timeout=5)[0] == 200
    server.stop()
    log = server.log()
    assert "GET /api/openapi.json HTTP/1.1" in log  # HTTP requests: always a line
    assert ("GET /ws HTTP/1.1" in log) is sessions_logged
