"""Issue 18 §2 and §3: what an anonymous client can cost the venue. The attacker is a plain
websocket client with no token, against a `feed serve` with no program (the documented "name
rooms as you go" mode); each test measures what the attack leaves behind (keys, metric series,
presence fields, bytes) and what a legitimate client meanwhile sees. The figures are printed
(`pytest -s`) and quoted in docs/reliability.md; the assertions are about behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
import websockets

from feed import keys
from feed.bus import Bus
from feed.embedded import RedisProcess
from publisher import Publisher, tokens
from tests.conftest import FeedServer, connect
from tests.web.test_observe import scrape

Servers = Callable[..., FeedServer]
NAMES = [f"room:made-up-{i}" for i in range(256)]


async def _flood_names(server: FeedServer, connections: int) -> None:
    """Each connection subscribes to 256 made-up rooms, as a screen and as a named one."""

    async def one(i: int) -> None:
        query = "?kind=screen" if i % 2 else f"?screen=door-atlas-{i}"
        async with connect(server.ws_url + query) as client:
            await client.subscribe(NAMES)
            await client.send({"type": "ack", "id": "fake-evacuation"})
            await client.until(lambda m: m["type"] == "error")

    await asyncio.gather(*(one(i) for i in range(connections)))


async def test_an_anonymous_flood_of_names_writes_nothing_and_creates_no_series(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    raw = aioredis.Redis.from_url(redis.url)
    try:
        async with Publisher(redis.url) as pub:  # one room exists: it keeps its own label
            await pub.status("atlas", "live")
        before = {k async for k in raw.scan_iter(match="feed:{*")}
        async with connect(server.ws_url) as watcher:
            await watcher.subscribe(["room:atlas"])
            started = time.monotonic()
            await _flood_names(server, 40)
            took = time.monotonic() - started
            # Held open while the server reports presence: a report with everything in it.
            async with connect(server.ws_url + "?kind=phone") as holder:
                await holder.subscribe(NAMES)
                await asyncio.sleep(6)
                metrics = await scrape(server)
                presence = {
                    k: await raw.hgetall(k)
                    async for k in raw.scan_iter(match=keys.PRESENCE_PREFIX + "*")
                }
        after = {k async for k in raw.scan_iter(match="feed:{*")}
        screens = await raw.hlen(keys.SCREENS)
        receipts = [k async for k in raw.scan_iter(match=keys.RECEIPTS_PREFIX + "*")]
    finally:
        await raw.aclose()
    series = sorted(k for k in metrics if k.startswith("feed_subscriptions{"))
    fields = sorted(
        f.decode() if isinstance(f, bytes) else f for fs in presence.values() for f in fs
    )
    print(
        f"\n40 anonymous connections x 256 made-up rooms in {took:.1f} s: channel keys"
        f" {len(before)} -> {len(after)}; feed_subscriptions series {len(series)}; presence"
        f" fields {len(fields)}; named screens {screens}; receipts {len(receipts)}"
    )
    assert after == before  # reading never writes a channel
    assert series == [
        'feed_subscriptions{channel="other"}', 'feed_subscriptions{channel="room:atlas"}'
    ]  # fmt: skip
    assert metrics['feed_subscriptions{channel="other"}'] == 256
    assert fields == ["other|phone", "room:atlas|other"]
    assert screens == 0 and receipts == []  # no name claimed, no receipt faked


async def test_a_redis_that_refuses_writes_says_so_and_screens_are_still_served(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    raw = aioredis.Redis.from_url(redis.url)
    bus = Bus(redis.url)
    operator, _ = await tokens.create(bus, "operator", ["atlas"], "door")
    await bus.aclose()
    headers = {"Authorization": f"Bearer {operator}"}
    try:
        async with Publisher(redis.url) as pub:
            await pub.status("atlas", "live")
        await raw.config_set("maxmemory", 1)  # full: every write is refused (noeviction)
        async with aiohttp.ClientSession() as http:
            ready: dict[str, Any] = {}
            for _ in range(100):
                async with http.get(server.url + "/readyz") as answer:
                    ready = await answer.json()
                    status = answer.status
                if ready.get("writes") == "refused":
                    break
                await asyncio.sleep(0.1)
            assert status == 200 and ready["ready"] is True, ready
            assert ready["writes"] == "refused", ready
            assert ready["writes_refused"].startswith("out of memory"), ready
            assert (await scrape(server))["feed_redis_writable"] == 0
            async with connect(server.ws_url) as screen:  # reading still works
                got = await screen.subscribe(["room:atlas"])
                assert got[0]["state"]["status"] == "live"
            async with http.post(
                server.url + "/api/rooms/atlas/status", json={"status": "ended"}, headers=headers
            ) as answer:
                assert answer.status == 503
                assert "maxmemory" in (await answer.json())["error"]["message"]
            await raw.config_set("maxmemory", 0)
            for _ in range(100):
                async with http.get(server.url + "/readyz") as answer:
                    ready = await answer.json()
                if ready.get("writes") == "accepted":
                    break
                await asyncio.sleep(0.1)
            assert ready["writes"] == "accepted"
    finally:
        await raw.config_set("maxmemory", 0)
        await raw.aclose()


async def _pings(server: FeedServer, stop: asyncio.Event) -> list[float]:
    """A legitimate client following atlas, pinging every 50 ms; its round trips in ms."""
    rtts = []
    async with connect(server.ws_url) as client:
        await client.subscribe(["room:atlas", "venue"])
        while not stop.is_set():
            sent = time.perf_counter()
            await client.send({"type": "ping"})
            await client.until(lambda m: m["type"] == "pong", timeout=30)
            rtts.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(0.05)
    return rtts


async def _resubscriber(server: FeedServer, rounds: int, received: list[int]) -> None:
    """Connects, sends 20 subscribes of 256 channels at once (the per-connection burst),
    reads what comes for a while, and starts over on a new connection."""
    message = orjson.dumps({"type": "subscribe", "channels": NAMES}).decode()
    for _ in range(rounds):
        async with websockets.connect(server.ws_url, max_size=None, open_timeout=10) as conn:
            for _ in range(20):
                await conn.send(message)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    async for frame in conn:
                        received[0] += len(frame)


async def test_a_subscribe_flood_stays_within_the_budget_and_pings_stay_answered(
    redis: RedisProcess, feed_server: Servers
) -> None:
    rate = 2000
    server = feed_server(redis.url, env={"FEED_SUBSCRIBE_RATE": str(rate)})
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "live")
    stop = asyncio.Event()
    pinging = asyncio.create_task(_pings(server, stop))
    await asyncio.sleep(1)
    received = [0]
    started = time.monotonic()
    await asyncio.gather(*(_resubscriber(server, 3, received) for _ in range(10)))
    took = time.monotonic() - started
    metrics = await scrape(server)
    stop.set()
    rtts = await pinging
    asked = 10 * 3 * 20 * 256
    began = metrics["feed_subscriptions_started_total"]
    encoded = metrics['feed_snapshots_total{how="encoded"}']
    reused = metrics['feed_snapshots_total{how="reused"}']
    deferred = metrics["feed_subscriptions_deferred_total"]
    print(
        f"\n10 connections x 3 reconnects x 20 subscribes x 256 channels ({asked} asked) in"
        f" {took:.1f} s: {int(began)} started, {int(deferred)} waited,"
        f" {received[0] / 1e6:.1f} MB sent; snapshots encoded {int(encoded)}, reused"
        f" {int(reused)}; a legitimate client's pings: {len(rtts)}, median"
        f" {statistics.median(rtts):.1f} ms, max {max(rtts):.1f} ms"
    )
    # The budget held: never more started than it allows (a second's burst included).
    assert began <= rate * (took + 2) + rate
    assert metrics["feed_subscriptions_deferred_total"] > 0
    # Each (channel, seq) was encoded about once, whoever asked: the rest reused the bytes.
    assert (
        metrics['feed_snapshots_total{how="reused"}']
        > 10 * metrics['feed_snapshots_total{how="encoded"}']
    )
    # The legitimate client was answered throughout: nothing it asked waited for the flood.
    assert len(rtts) > 10
