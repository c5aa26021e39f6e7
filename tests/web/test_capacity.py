"""A server at its open-file limit keeps serving what it holds and answers the rest 503 at once."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable

import orjson

from feed.embedded import RedisProcess
from publisher import Publisher
from tests.conftest import FeedServer, connect
from web.capacity import cap_for

Servers = Callable[..., FeedServer]
LIMIT = 256  # open files for the server under test: room for cap_for(256) = 192 connections


async def hold(port: int) -> tuple[int, bytes, asyncio.StreamWriter]:
    """Open a connection, ask /healthz with keep-alive, and keep the connection open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: feed\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
    return status, await asyncio.wait_for(reader.readexactly(length), 10), writer


async def test_at_its_cap_a_server_refuses_with_503_and_serves_its_clients(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, open_files=LIMIT)
    cap = cap_for(LIMIT)
    held: list[asyncio.StreamWriter] = []
    async with Publisher(redis.url) as pub, connect(server.ws_url) as screen:
        await screen.subscribe(["room:atlas"])
        answers = []
        try:
            for _ in range(cap + 60):
                try:
                    status, body, writer = await hold(server.port)
                except (ConnectionError, asyncio.IncompleteReadError):
                    answers.append((0, b""))  # refused past the refusals it answers: a reset
                    continue
                answers.append((status, body))
                held.append(writer)
            served = [s for s, _ in answers if s == 200]
            refused = [b for s, b in answers if s == 503]
            # Every connection up to the cap is served (the screen holds one), the rest refused.
            assert cap - 10 <= len(served) <= cap
            # The rest: a 503 each while the refusals in flight fit in the reserve, else a reset.
            assert len(refused) >= 20 and len(answers) - len(served) >= 60
            assert orjson.loads(refused[0])["error"]["code"] == "unavailable"
            # The screen it already had is served all along.
            await pub.status("atlas", "live")
            (event,) = await screen.events(1)
            assert event["data"]["status"] == "live"
        finally:
            for writer in held:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        # Room again once connections go: a new client gets in.
        await asyncio.sleep(0.5)
        async with connect(server.ws_url) as again:
            got = await again.subscribe(["room:atlas"])
            assert any(m["type"] == "snapshot" for m in got)
    _, metrics = await asyncio.to_thread(_metrics, server.url)
    assert re.search(rf"^feed_connection_cap {cap}(\.0)?$", metrics, re.M)
    refused_total = re.search(r"^feed_connections_refused_total (\d+)", metrics, re.M)
    assert refused_total and int(refused_total.group(1)) >= 50
    assert re.search(r"^feed_accept_errors_total 0(\.0)?$", metrics, re.M)
    log = server.log()
    assert 1 <= log.count("at capacity") <= 3  # once per interval, not once per connection
    assert "out of system resource" not in log and "Traceback" not in log
    assert server.proc is not None and server.proc.poll() is None


def _metrics(url: str) -> tuple[int, str]:
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(url + "/metrics", timeout=5) as answer:
        return answer.status, answer.read().decode()
