"""End to end: real `feed serve` processes, real Redis, the `websockets` library as the client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from feed.embedded import RedisProcess
from publisher import Publisher
from tests.conftest import FeedServer, connect

Servers = Callable[..., FeedServer]
EXPO = Path(__file__).resolve().parent / "fixtures" / "expo.json"


def seqs(msgs: list[dict[str, Any]], kind: str = "event") -> list[int]:
    return [m["seq"] for m in msgs if m["type"] == kind]


async def test_snapshot_then_live_events_in_order(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "starting", session="s1")
        async with connect(server.ws_url) as client:
            got = await client.subscribe(["room:atlas", "venue"])
            snaps = {m["channel"]: m for m in got if m["type"] == "snapshot"}
            assert snaps["room:atlas"]["seq"] == 1
            assert snaps["room:atlas"]["state"]["status"] == "starting"
            assert snaps["room:atlas"]["state"]["session"] == "s1"
            assert snaps["venue"]["seq"] == 0
            assert snaps["venue"]["state"]["announcements"] == []

            await pub.status("atlas", "live", session="s1")
            await pub.status("atlas", "delayed", delay=10)
            note = await pub.announce("Café ouvert · المقهى مفتوح", priority="info")
            events = await client.events(3)
    assert [(e["channel"], e["seq"]) for e in events] == [
        ("room:atlas", 2),
        ("room:atlas", 3),
        ("venue", 1),
    ]
    assert events[1]["kind"] == "status" and events[1]["data"]["delay"] == 10
    assert events[2]["data"]["text"] == note["text"]
    assert all(e["epoch"] == snaps[e["channel"]]["epoch"] for e in events)


async def test_resume_gets_exactly_the_missed_events(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "live")
        async with connect(server.ws_url) as client:
            got = await client.subscribe(["room:atlas"])
        snap = next(m for m in got if m["type"] == "snapshot")
        since = {"room:atlas": {"epoch": snap["epoch"], "seq": snap["seq"]}}
        # Away for a few events (served from the server's memory), then for many more than it
        # keeps (served from the Redis history stream).
        for missed in (3, 400):
            for i in range(missed):
                await pub.status("atlas", "delayed", delay=i % 60)
            async with connect(server.ws_url) as client:
                got = await client.subscribe(["room:atlas"], since)
            first = since["room:atlas"]["seq"] + 1
            assert [m["type"] for m in got[:-1]] == ["event"] * missed
            assert seqs(got) == list(range(first, first + missed))
            assert got[-1]["resumed"] is True
            since["room:atlas"]["seq"] = got[-1]["seq"]


async def test_resume_with_nothing_missed_sends_nothing_but_goes_live(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "live")
        async with connect(server.ws_url) as client:
            snap = next(
                m for m in await client.subscribe(["room:atlas"]) if m["type"] == "snapshot"
            )
        since = {"room:atlas": {"epoch": snap["epoch"], "seq": snap["seq"]}}
        async with connect(server.ws_url) as client:
            got = await client.subscribe(["room:atlas"], since)
            assert [m["type"] for m in got] == ["subscribed"]
            await pub.status("atlas", "full")
            (event,) = await client.events(1)
    assert event["seq"] == snap["seq"] + 1


async def test_unusable_since_gets_a_fresh_snapshot(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url, history=10) as pub:
        for _ in range(3):
            await pub.status("atlas", "live")
        async with connect(server.ws_url) as client:
            snap = next(
                m for m in await client.subscribe(["room:atlas"]) if m["type"] == "snapshot"
            )
        epoch = snap["epoch"]
        for _ in range(300):  # more than the server's memory and Redis's history keep
            await pub.status("atlas", "full")
        cases = {
            "stale epoch": {"epoch": "not-the-epoch", "seq": 3},
            "seq ahead": {"epoch": epoch, "seq": 10_000},
            "history trimmed": {"epoch": epoch, "seq": 1},
        }
        for case, since in cases.items():
            async with connect(server.ws_url) as client:
                got = await client.subscribe(["room:atlas"], {"room:atlas": since})
            assert [m["type"] for m in got] == ["snapshot", "subscribed"], case
            assert got[0]["seq"] == 303 and got[0]["state"]["status"] == "full", case
            assert got[1]["resumed"] is False, case


async def test_two_servers_deliver_the_same_seq(redis: RedisProcess, feed_server: Servers) -> None:
    one, two = feed_server(redis.url), feed_server(redis.url)
    async with (
        Publisher(redis.url) as pub,
        connect(one.ws_url) as a,
        connect(two.ws_url) as b,
    ):
        await a.subscribe(["room:atlas", "venue"])
        await b.subscribe(["room:atlas", "venue"])
        for i in range(20):
            await pub.status("atlas", "delayed", delay=i)
            if i % 5 == 0:
                await pub.announce(f"note {i}")
        got_a, got_b = await a.events(24), await b.events(24)
    key = [(e["channel"], e["epoch"], e["seq"], e["data"]) for e in got_a]
    assert key == [(e["channel"], e["epoch"], e["seq"], e["data"]) for e in got_b]


async def test_announcement_reaches_only_its_rooms(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with (
        Publisher(redis.url) as pub,
        connect(server.ws_url) as atlas,
        connect(server.ws_url) as orion,
    ):
        await atlas.subscribe(["room:atlas", "venue"])
        await orion.subscribe(["room:orion", "venue"])
        await pub.announce("Atlas only", rooms=["atlas"], priority="important")
        await pub.announce("Everyone")
        got_atlas = await atlas.events(2)
        got_orion = await orion.events(1)
    assert [e["data"]["text"] for e in got_atlas] == ["Atlas only", "Everyone"]
    assert [e["data"]["text"] for e in got_orion] == ["Everyone"]


async def test_unsubscribe_stops_delivery(redis: RedisProcess, feed_server: Servers) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub, connect(server.ws_url) as client:
        await client.subscribe(["room:atlas", "room:orion"])
        await client.send({"type": "unsubscribe", "channels": ["room:atlas"]})
        await client.until(lambda m: m["type"] == "unsubscribed")
        await pub.status("atlas", "live")
        await pub.status("orion", "live")
        (event,) = await client.events(1)
    assert event["channel"] == "room:orion"


async def test_a_snapshot_bigger_than_the_client_queue_still_goes_out(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, env={"FEED_CLIENT_QUEUE_BYTES": "2000"})
    async with Publisher(redis.url) as pub:
        for i in range(5):
            await pub.announce(f"{i} " + "é" * 1500)
        async with connect(server.ws_url) as client:
            got = await client.subscribe(["venue"])
    assert len(got[0]["state"]["announcements"]) == 5


async def test_once_a_program_is_imported_only_its_rooms_can_be_followed(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with connect(server.ws_url) as client:  # no program yet: any room, as before
        got = await client.subscribe(["room:anything"])
        assert got[-1]["type"] == "subscribed"
    async with Publisher(redis.url) as pub:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
    raw = aioredis.Redis.from_url(redis.url)
    try:
        async with connect(server.ws_url) as client:
            await client.send({"type": "subscribe", "channels": ["room:nowhere", "venue"]})
            got = await client.until(lambda m: m["type"] == "subscribed")
            error = next(m for m in got if m["type"] == "error")
            assert error["code"] == "not_found" and error["channels"] == ["room:nowhere"]
            assert "nowhere" in error["message"]
            assert got[-1]["channel"] == "venue"  # the rest of the message is served
            got = await client.subscribe(["room:atlas"])
            assert got[-1]["type"] == "subscribed"
        # Asking for a room that does not exist leaves nothing behind in Redis.
        assert not [k async for k in raw.scan_iter(match="*nowhere*")]
    finally:
        await raw.aclose()
