"""Redis failing under a running server, and clients sending what they should not."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from feed import keys
from feed.embedded import RedisProcess
from publisher import Publisher
from tests.conftest import FeedServer, connect, deaf, get

Servers = Callable[..., FeedServer]


async def wait_ready(server: FeedServer, ready: bool, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    want = 200 if ready else 503
    while (status := (await asyncio.to_thread(get, server.url + "/readyz"))[0]) != want:
        assert time.monotonic() < deadline, f"/readyz stayed {status}"
        await asyncio.sleep(0.05)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for what the test means, not for a fixed time (a loaded machine is slower)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_redis_killed_and_restarted_keeps_clients_and_loses_nothing(
    redis_factory: Callable[..., RedisProcess], feed_server: Servers
) -> None:
    redis = redis_factory(fsync="always")
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "live")
    async with connect(server.ws_url) as client:
        got = await client.subscribe(["room:atlas"])
        epoch = got[0]["epoch"]

        redis.kill()  # SIGKILL; with fsync always, the append-only file has every change
        await client.until(lambda m: m["type"] == "health" and m["live"] is False)
        await wait_ready(server, False)
        assert (await asyncio.to_thread(get, server.url + "/healthz"))[0] == 200

        redis.start()
        # Published before the server is back on the bus: it must come from history.
        async with Publisher(redis.url) as pub:
            await pub.status("atlas", "delayed", delay=5)
            await pub.status("atlas", "delayed", delay=10)
            await wait_ready(server, True)
            await pub.status("atlas", "ended")
        got = await client.until(lambda m: m["type"] == "event" and m["seq"] == 4, timeout=15)
    events = [m for m in got if m["type"] == "event"]
    assert [(e["seq"], e["epoch"]) for e in events] == [(2, epoch), (3, epoch), (4, epoch)]
    assert not [m for m in got if m["type"] == "snapshot"]


async def test_redis_that_lost_its_data_gives_clients_a_new_epoch(
    redis_factory: Callable[..., RedisProcess], feed_server: Servers
) -> None:
    redis = redis_factory(appendonly=False)
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        for _ in range(5):
            await pub.status("atlas", "live")
    async with connect(server.ws_url) as client:
        got = await client.subscribe(["room:atlas"])
        old_epoch = got[0]["epoch"]
        redis.kill()
        redis.start()  # empty: no persistence
        got = await client.until(lambda m: m["type"] == "snapshot", timeout=15)
        snapshot = got[-1]
        assert snapshot["epoch"] != old_epoch
        assert snapshot["seq"] == 0 and snapshot["state"]["status"] is None
        async with Publisher(redis.url) as pub:
            await pub.status("atlas", "full")
        (event,) = await client.events(1)
    assert (event["epoch"], event["seq"]) == (snapshot["epoch"], 1)


async def test_redis_that_lost_its_last_writes_moves_to_a_new_epoch(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    admin = aioredis.Redis.from_url(redis.url)
    async with Publisher(redis.url) as pub, connect(server.ws_url) as client:
        await client.subscribe(["room:atlas"])
        for _ in range(5):
            await pub.status("atlas", "live")
        events = await client.events(5)
        # As if Redis restarted from an older append-only file: seq 5 became 3 in the same epoch.
        await admin.hset(keys.meta_key("room:atlas"), "seq", 3)
        await admin.client_kill_filter(_type="pubsub")  # the server resubscribes and syncs
        got = await client.until(lambda m: m["type"] == "snapshot", timeout=15)
    await admin.aclose()
    snapshot = got[-1]
    assert snapshot["epoch"] != events[-1]["epoch"] and snapshot["seq"] == 0
    assert snapshot["state"]["status"] == "live"  # the state survives the move


async def test_a_redis_that_may_evict_is_reported(
    redis: RedisProcess, feed_server: Servers
) -> None:
    admin = aioredis.Redis.from_url(redis.url)
    await admin.config_set("maxmemory-policy", "allkeys-lru")
    await admin.aclose()
    server = feed_server(redis.url)
    deadline = time.monotonic() + 5
    while "maxmemory-policy is allkeys-lru" not in server.log():
        assert time.monotonic() < deadline, server.log()
        await asyncio.sleep(0.05)


async def test_events_missed_by_a_dropped_subscription_are_recovered(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    admin = aioredis.Redis.from_url(redis.url)
    async with Publisher(redis.url) as pub, connect(server.ws_url) as client:
        await client.subscribe(["room:atlas"])
        await pub.status("atlas", "live")
        await client.events(1)
        for _ in range(5):
            # Cut the server's pub/sub connection and publish at once, before it resubscribes.
            await admin.client_kill_filter(_type="pubsub")
            await pub.status("atlas", "delayed", delay=1)
            await pub.status("atlas", "delayed", delay=2)
        events = await client.events(10, timeout=15)
    await admin.aclose()
    assert [e["seq"] for e in events] == list(range(2, 12))


async def test_subscribing_while_redis_is_down_gets_the_snapshot_when_it_returns(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.status("orion", "full")
    redis.stop()
    await wait_ready(server, False)
    async with connect(server.ws_url) as client:
        await client.send({"type": "subscribe", "channels": ["room:orion"]})
        with pytest.raises(TimeoutError):
            await client.recv(timeout=0.5)
        redis.start()
        got = await client.until(lambda m: m["type"] == "subscribed", timeout=15)
    assert got[-2]["type"] == "snapshot" and got[-2]["state"]["status"] == "full"


async def test_garbage_gets_errors_and_never_touches_other_clients(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with (
        Publisher(redis.url) as pub,
        connect(server.ws_url) as bystander,
        connect(server.ws_url) as bad,
    ):
        await bystander.subscribe(["room:atlas"])
        bad_frames: list[Any] = [
            "not json",
            "[1, 2]",
            '{"no": "type"}',
            '{"type": "launch"}',
            '{"type": "subscribe", "channels": []}',
            '{"type": "subscribe", "channels": ["room:Not Valid"]}',
            '{"type": "subscribe", "channels": ["elsewhere"]}',
            '{"type": "subscribe", "channels": ["venue"], "since": {"venue": {"epoch": 3}}}',
            orjson.dumps({"type": "subscribe", "channels": [f"room:r{i}" for i in range(300)]}),
            "\x00\xff",
        ]
        for frame in bad_frames:
            await bad.send(frame if isinstance(frame, str) else frame.decode())
            reply = await bad.recv()
            assert reply["type"] == "error", frame
            assert reply["code"] in ("invalid", "limit") and reply["message"], reply
        # Still usable after all that.
        await bad.subscribe(["room:atlas"])
        await pub.status("atlas", "live")
        assert (await bystander.events(1))[0]["seq"] == 1
        assert (await bad.events(1))[0]["seq"] == 1


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x01\x02", 1003),  # binary
        ("x" * (64 * 1024 + 1), 1009),  # over the frame limit
    ],
)
async def test_bad_frames_close_with_a_meaningful_code(
    redis: RedisProcess, feed_server: Servers, frame: str | bytes, code: int
) -> None:
    server = feed_server(redis.url)
    async with connect(server.ws_url) as client:
        await client.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(5):
                await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_a_client_that_keeps_sending_garbage_is_closed(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with connect(server.ws_url) as client:
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(100):
                await client.send("nope")
                await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_slow_client_is_closed_with_4008_and_others_keep_up(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, env={"FEED_CLIENT_QUEUE_BYTES": "65536"})
    blob = "x" * 60_000  # an event kind the reducer does not know: forwarded, state untouched
    async with (
        Publisher(redis.url) as pub,
        connect(server.ws_url) as fast,
        deaf(server, ["venue"]) as slow,
    ):
        await fast.subscribe(["venue"])
        for _ in range(400):  # 24 MB: more than the socket buffers between them hold
            await pub.publish("venue", "note", {"blob": blob})
            assert len(await fast.events(1)) == 1
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(slow.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008


async def test_sigterm_closes_websockets_with_1001_and_exits(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with connect(server.ws_url) as client:
        await client.subscribe(["venue"])
        started = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await asyncio.to_thread(server.proc.wait, 10) == 0
    assert time.monotonic() - started < 10


def established(port: int) -> int:
    """Established TCP connections whose local port is `port` (the server's side of them)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    count += 1
    return count


def deaf_client(port: int) -> socket.socket:
    """A websocket client that subscribes to `venue` and then never reads a byte."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    payload = b'{"type":"subscribe","channels":["venue"]}'
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


async def test_a_deaf_client_is_let_go_and_does_not_hold_up_shutdown(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, env={"FEED_CLIENT_QUEUE_BYTES": "65536"})
    deaf = [deaf_client(server.port) for _ in range(3)]
    try:
        async with Publisher(redis.url) as pub:
            await until(lambda: established(server.port) == 3)
            blob = "x" * 60_000
            for _ in range(300):  # 18 MB: far more than the sockets hold
                await pub.publish("venue", "note", {"blob": blob})
            # Closed as slow, their close frames never read: the server lets go of the sockets.
            deadline = time.monotonic() + 10
            while established(server.port) > 0:
                assert time.monotonic() < deadline, "slow clients still held"
                await asyncio.sleep(0.1)
        stuck = deaf_client(server.port)  # and one more that is deaf at shutdown time
        deaf.append(stuck)
        await until(lambda: established(server.port) == 1)
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 5
    finally:
        for sock in deaf:
            sock.close()


async def test_a_big_resume_is_not_mistaken_for_a_slow_client(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, env={"FEED_CLIENT_QUEUE_BYTES": "65536"})
    rooms = [f"room:r{i}" for i in range(20)]
    async with Publisher(redis.url) as pub, connect(server.ws_url) as client:
        got = await client.subscribe(rooms)
        since = {
            m["channel"]: {"epoch": m["epoch"], "seq": m["seq"]}
            for m in got
            if m["type"] == "snapshot"
        }
        for _ in range(60):  # 1200 missed events in all, more bytes than the limit
            await asyncio.gather(*(pub.status(r.removeprefix("room:"), "live") for r in rooms))
    async with connect(server.ws_url) as client:
        got = await client.subscribe(rooms, since)
    assert len([m for m in got if m["type"] == "event"]) == 1200
    assert not [m for m in got if m["type"] == "snapshot"]


async def test_subscribe_floods_are_refused(redis: RedisProcess, feed_server: Servers) -> None:
    server = feed_server(redis.url)
    async with connect(server.ws_url) as client:
        for i in range(30):
            await client.send({"type": "subscribe", "channels": [f"room:r{i}"]})
        got = await client.until(lambda m: m["type"] == "error")
        assert got[-1]["code"] == "limit" and "too many subscribe" in got[-1]["message"]
