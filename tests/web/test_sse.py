"""GET /sse: the same feed as Server-Sent Events, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from feed.embedded import RedisProcess
from publisher import Publisher
from tests.conftest import FeedServer

Servers = Callable[..., FeedServer]


class Stream:
    """An SSE stream read with aiohttp, parsed by the rules of the format."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None
        self.retry: int | None = None

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message (its `data` parsed), with `_id` set when it carried an id."""
        data: list[str] = []
        event_id = None
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), timeout)
            if not raw:
                raise EOFError("the stream ended")
            line = raw.decode().rstrip("\n")
            if line == "":
                if data:
                    msg: dict[str, Any] = orjson.loads("\n".join(data))
                    if event_id is not None:
                        self.last_id = msg["_id"] = event_id
                    return msg
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
            elif field == "retry":
                self.retry = int(value)

    async def until(self, kind: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        while not got or got[-1]["type"] != kind:
            got.append(await self.next(timeout))
        return got


@contextlib.asynccontextmanager
async def stream(
    server: FeedServer, query: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Stream]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/sse?{query}", headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        yield Stream(response)


async def test_a_stream_gives_snapshot_then_events_with_resumable_ids(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "live")
        async with stream(server, "channels=room:atlas") as sse:
            hello = await sse.next()
            assert hello["type"] == "hello" and sse.retry == 2000
            snapshot, subscribed = await sse.until("subscribed")
            assert snapshot["type"] == "snapshot" and snapshot["state"]["status"] == "live"
            epoch = snapshot["epoch"]
            assert snapshot["_id"] == f"{epoch}:1"  # one channel: simply <epoch>:<seq>
            assert subscribed["_id"] == f"{epoch}:1"
            await pub.status("atlas", "delayed", delay=5)
            (event,) = await sse.until("event")
            assert event["_id"] == f"{epoch}:2" and event["data"]["delay"] == 5
        # Cut off; two more changes; back with the last id as a browser sends it.
        await pub.status("atlas", "delayed", delay=10)
        await pub.status("atlas", "full")
        async with stream(server, "channels=room:atlas", {"Last-Event-ID": f"{epoch}:2"}) as sse:
            got = await sse.until("subscribed")
    assert [m["type"] for m in got] == ["hello", "event", "event", "subscribed"]
    assert [m["seq"] for m in got[1:3]] == [3, 4] and got[-1]["resumed"] is True
    assert got[2]["_id"] == f"{epoch}:4"


async def test_a_stream_of_several_channels_resumes_each(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "live")
        await pub.announce("Bienvenue")
        async with stream(server, "channels=venue,room:atlas") as sse:
            await sse.until("subscribed")
            await sse.until("subscribed")
            last = sse.last_id
        assert last is not None and last.startswith("venue=") and ",room:atlas=" in last
        await pub.status("atlas", "ended")
        async with stream(server, f"channels=venue,room:atlas&since={last}") as sse:
            got = [await sse.next() for _ in range(4)]
    kinds = [(m["type"], m.get("channel")) for m in got]
    assert kinds[0] == ("hello", None)
    assert ("subscribed", "venue") in kinds and ("event", "room:atlas") in kinds
    assert all(m.get("resumed", True) for m in got if m["type"] == "subscribed")


async def test_a_stream_keeps_talking_and_refuses_what_it_cannot_serve(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with stream(server, "channels=venue&kind=phone") as sse:
        await sse.until("subscribed")
        pong = await sse.next(timeout=8)  # nothing happens: a pong keeps the stream alive
        assert pong["type"] == "pong"
    async with aiohttp.ClientSession() as http:
        for query in ("", "channels=", "channels=lobby", "channels=venue&screen=%3Cb%3E"):
            async with http.get(f"{server.url}/sse?{query}") as answer:
                assert answer.status in (400, 422), query
                body = await answer.json()
                assert set(body["error"]) == {"code", "message", "field"}


async def test_a_server_going_away_ends_the_stream(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with stream(server, "channels=venue") as sse:
        await sse.until("subscribed")
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
            while True:
                await sse.next(timeout=10)
        assert await stopping == 0


async def test_a_resume_with_nothing_missed_keeps_every_channel_in_the_id(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "live")
        await pub.announce("Bienvenue")
        async with stream(server, "channels=venue,room:atlas") as sse:
            await sse.until("subscribed")
            await sse.until("subscribed")
            first = sse.last_id
        async with stream(server, f"channels=venue,room:atlas&since={first}") as sse:
            await sse.until("subscribed")
            await sse.until("subscribed")
            await pub.announce("Le déjeuner est servi")
            await sse.until("event")
            second = sse.last_id
    assert second is not None and "room:atlas=" in second and "venue=" in second
    async with stream(server, f"channels=venue,room:atlas&since={second}") as sse:
        got = [await sse.next() for _ in range(3)]
    assert [m["type"] for m in got] == ["hello", "subscribed", "subscribed"]
    assert all(m["resumed"] for m in got[1:])


async def test_http_1_0_gets_a_stream_and_head_gets_no_endless_answer(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /sse?channels=venue HTTP/1.0\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
    body = await asyncio.wait_for(reader.readuntil(b'"type":"subscribed"'), 5)
    assert body.startswith(b'retry: 2000\n\ndata: {"type":"hello"')
    writer.close()
    async with (
        aiohttp.ClientSession() as http,
        http.head(f"{server.url}/sse?channels=venue") as answer,
    ):
        assert answer.status == 405
