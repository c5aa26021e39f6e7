"""Faults with real processes: network stalls, Redis dropping its subscribers, servers killed,
rolling restarts, publishes while Redis is down, a client that stops reading.

Every test ends with the same check: what clients received is every change, in order, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.exceptions import ConnectionClosed

from feed.bus import Bus
from feed.embedded import RedisProcess
from publisher import Publisher, tokens
from tests.conftest import Client, FeedServer, connect, deaf, feed_command, get

Servers = Callable[..., FeedServer]


class StallingProxy:
    """A TCP proxy to Redis whose open connections can be frozen: bytes stop flowing both ways
    while the connections stay open, as on a stalled network. New connections flow normally."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._frozen: list[asyncio.Event] = []  # set: the connection flows
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> None:
        for flowing in self._frozen:
            flowing.clear()
        self._frozen = []  # later connections flow

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        flowing = asyncio.Event()
        flowing.set()
        self._frozen.append(flowing)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst, flowing))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(
        src: asyncio.StreamReader, dst: asyncio.StreamWriter, flowing: asyncio.Event
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                await flowing.wait()  # frozen: hold the bytes, keep the socket open
                dst.write(data)
                await dst.drain()
        dst.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def stalling_proxy(redis: RedisProcess) -> AsyncIterator[StallingProxy]:
    assert redis.port is not None
    proxy = StallingProxy(redis.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def ready(server: FeedServer, want: bool, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while ((await asyncio.to_thread(get, server.url + "/readyz"))[0] == 200) != want:
        assert time.monotonic() < deadline, f"/readyz did not turn {want} in {timeout} s"
        await asyncio.sleep(0.1)


def statuses(events: list[dict[str, Any]]) -> list[int]:
    return [e["data"]["delay"] for e in events]


async def test_a_stalled_network_is_noticed_by_the_probe_and_nothing_is_missed(
    redis: RedisProcess, feed_server: Servers
) -> None:
    async with stalling_proxy(redis) as proxy, Publisher(redis.url) as pub:
        # In a thread: the proxy runs on this loop, and the start waits for the server's
        # readiness, which needs the proxy.
        server = await asyncio.to_thread(feed_server, proxy.url)
        async with connect(server.ws_url) as client:
            await client.subscribe(["room:atlas"])
            await pub.status("atlas", "delayed", delay=1)
            assert statuses(await client.events(1)) == [1]
            proxy.freeze()  # the server's connections to Redis go silent, and stay open
            for delay in (2, 3, 4):
                await pub.status("atlas", "delayed", delay=delay)
            # The probe does not come back: the server tells its clients it is cut off (it is
            # not ready), subscribes again through a new connection, catches up, and says it is
            # live again. Watched on the websocket: the gap between the two can be a fraction of
            # a second, too short to catch by polling /readyz.
            got = await client.until(lambda m: m["type"] == "health" and not m["live"], 15)
            got += await client.until(lambda m: m["type"] == "health" and m["live"], 30)
            await ready(server, True, timeout=5)
            await pub.status("atlas", "delayed", delay=5)
            got += await client.until(lambda m: m["type"] == "event" and m["seq"] == 5, 15)
    events = [m for m in got if m["type"] == "event"]
    assert statuses(events) == [2, 3, 4, 5]
    assert [e["seq"] for e in events] == [2, 3, 4, 5]
    assert "did not come back through the subscription" in server.log()


async def test_redis_dropping_an_overfull_subscriber_is_recovered_from(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    admin = aioredis.Redis.from_url(redis.url)
    # Redis drops a subscriber that has more than 64 KiB waiting for it.
    await admin.config_set("client-output-buffer-limit", "pubsub 65536 32768 1")
    blob = "x" * 50_000
    try:
        async with Publisher(redis.url) as pub, connect(server.ws_url) as client:
            await client.subscribe(["venue"])
            assert server.proc is not None
            server.proc.send_signal(signal.SIGSTOP)  # the server stops reading for a while
            try:
                # 15 MB for a subscriber that reads nothing: more than the sockets between
                # them hold, so it piles up in Redis's output buffer for it.
                for i in range(300):
                    await pub.publish("venue", "note", {"i": i, "blob": blob})
                await asyncio.sleep(1.5)
            finally:
                server.proc.send_signal(signal.SIGCONT)
            await pub.publish("venue", "note", {"i": 300, "blob": ""})
            events = await client.events(301, timeout=45)
    finally:
        await admin.config_set("client-output-buffer-limit", "pubsub 33554432 8388608 60")
        await admin.aclose()
    assert [e["data"]["i"] for e in events] == list(range(301))
    assert "lost the Redis subscription" in server.log()


async def resume_on(server: FeedServer, channel: str, epoch: str, seq: int) -> Client:
    """Open a client on `server` that resumes `channel` after `seq`."""
    conn = await websockets.connect(server.ws_url, open_timeout=5)
    client = Client(conn)
    assert (await client.recv())["type"] == "hello"
    await client.send(
        {"type": "subscribe", "channels": [channel], "since": {channel: {"epoch": epoch,
                                                                           "seq": seq}}}
    )  # fmt: skip
    return client


async def test_clients_of_a_killed_server_resume_on_another_with_no_gap(
    redis: RedisProcess, feed_server: Servers
) -> None:
    a, b = feed_server(redis.url), feed_server(redis.url)
    async with Publisher(redis.url) as pub, contextlib.AsyncExitStack() as stack:
        on_a = [await stack.enter_async_context(connect(a.ws_url)) for _ in range(5)]
        for client in on_a:
            got = await client.subscribe(["room:atlas"])
        epoch = got[-1]["epoch"]
        await pub.status("atlas", "delayed", delay=1)
        for client in on_a:
            await client.events(1)
        assert a.proc is not None
        a.proc.kill()  # no close frames, no goodbye
        for delay in (2, 3):
            await pub.status("atlas", "delayed", delay=delay)
        for client in on_a:
            with pytest.raises(ConnectionClosed):
                await client.recv(timeout=5)
        moved = [await resume_on(b, "room:atlas", epoch, 1) for _ in on_a]
        for client in moved:
            stack.push_async_callback(client.conn.close)
            got = await client.until(lambda m: m["type"] == "subscribed")
            assert got[-1]["resumed"] is True
            assert statuses([m for m in got if m["type"] == "event"]) == [2, 3]


async def collect(client: Client, seconds: float) -> list[int]:
    """The seqs of the events `client` receives in the next `seconds`."""
    seqs: list[int] = []
    deadline = time.monotonic() + seconds
    with contextlib.suppress(TimeoutError):
        while (left := deadline - time.monotonic()) > 0:
            m = await client.recv(timeout=left)
            if m["type"] == "event":
                seqs.append(m["seq"])
    return seqs


async def test_a_rolling_restart_moves_clients_with_1001_and_loses_nothing(
    redis: RedisProcess, feed_server: Servers
) -> None:
    a, b = feed_server(redis.url), feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        client = await resume_on(a, "room:atlas", "none", 0)  # an unknown epoch: a snapshot
        got = await client.until(lambda m: m["type"] == "subscribed")
        epoch, seen = got[-1]["epoch"], [got[-1]["seq"]]
        publishing = True

        async def publish() -> None:
            delay = 0
            while publishing:
                delay += 1
                await pub.status("atlas", "delayed", delay=delay % 1000)
                await asyncio.sleep(0.05)

        publisher = asyncio.create_task(publish())
        try:
            seen += await collect(client, 0.5)
            for stopping, other in ((a, b), (b, a)):  # restart A, then B
                stop = asyncio.create_task(asyncio.to_thread(stopping.stop))
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        m = await client.recv(timeout=10)
                        if m["type"] == "event":
                            seen.append(m["seq"])
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
                assert await stop == 0
                client = await resume_on(other, "room:atlas", epoch, seen[-1])
                got = await client.until(lambda m: m["type"] == "subscribed")
                assert got[-1]["resumed"] is True
                seen += [m["seq"] for m in got if m["type"] == "event"]
                await asyncio.to_thread(stopping.start)  # back before the next one goes
                seen += await collect(client, 0.5)
        finally:
            publishing = False
            await publisher
        seen += await collect(client, 0.5)
        await client.conn.close()
    assert seen == list(range(seen[0], seen[0] + len(seen)))  # in order, none twice, no gap
    assert len(seen) > 10


async def test_publishing_while_redis_is_down_fails_clearly_and_writes_nothing(
    redis: RedisProcess, feed_server: Servers, tmp_path: Path
) -> None:
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    secret, _ = await tokens.create(bus, "admin", [], "ops")
    await bus.aclose()
    async with Publisher(redis.url) as pub, connect(server.ws_url) as client:
        await client.subscribe(["room:atlas"])
        await pub.status("atlas", "delayed", delay=1)
        await client.events(1)
        redis.stop()
        await ready(server, False)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                server.url + "/api/rooms/atlas/status",
                json={"status": "live"},
                headers={"Authorization": f"Bearer {secret}"},
            ) as answer,
        ):
            body = await answer.json()
        assert answer.status == 503 and body["error"]["code"] == "unavailable"
        done = await asyncio.to_thread(
            subprocess.run,
            feed_command("publish", "status", "atlas", "live", "--redis-url", redis.url),
            capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert done.returncode == 1 and "Redis" in done.stderr and "Traceback" not in done.stderr
        with pytest.raises(Exception, match="Redis"):
            await pub.status("atlas", "live")
        redis.start()
        await ready(server, True)
        await pub.status("atlas", "delayed", delay=2)
        (event,) = await client.events(1, timeout=15)
    # None of the failed attempts left anything behind: the next change is seq 2.
    assert event["seq"] == 2 and event["data"]["delay"] == 2


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.timeout(120)
async def test_a_client_that_stops_reading_costs_bounded_memory_and_nobody_else_waits(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, env={"FEED_CLIENT_QUEUE_BYTES": "262144"})
    assert server.proc is not None
    note = {"text": "y" * 1000}
    async with (
        Publisher(redis.url) as pub,
        connect(server.ws_url) as fast,
        deaf(server, ["venue"]) as slow,
    ):
        await fast.subscribe(["venue"])
        await asyncio.sleep(0.2)
        received: list[int] = []

        async def read_fast() -> None:
            while len(received) < 10_000:
                received.extend(e["data"]["i"] for e in await fast.events(1, timeout=30))

        reader = asyncio.create_task(read_fast())
        before = await asyncio.to_thread(rss, server.proc.pid)
        peak = before
        for i in range(10_000):  # 10 MB for a client that reads nothing
            await pub.publish("venue", "note", note | {"i": i})
            if i % 500 == 0:
                peak = max(peak, await asyncio.to_thread(rss, server.proc.pid))
        await asyncio.wait_for(reader, 60)
        assert received == list(range(10_000))  # the fast client got everything, in order
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(slow.recv(), 10)
    # It was closed as slow (4008). On a loaded machine the publishing may outlast the close
    # handshake's grace, and the server then drops the socket with the close frame unread in it:
    # the server's own count says why it went.
    if closed.value.rcvd is not None:
        assert closed.value.rcvd.code == 4008
    else:
        async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as answer:
            metrics = await answer.text()
        assert re.search(r"^feed_slow_disconnects_total [1-9]", metrics, re.M), metrics[:2000]
    # What the slow client did not read was not kept: far less than the 10 MB pushed at it.
    assert peak - before < 8 * 2**20, f"RSS grew by {(peak - before) / 2**20:.1f} MiB"
    assert server.proc.poll() is None


async def test_a_publish_whose_answer_was_lost_is_safe_to_retry(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    secret, _ = await tokens.create(bus, "moderator", [], "desk")
    await bus.aclose()
    body = orjson.dumps({"status": "delayed", "delay_min": 7})
    request = (
        f"POST /api/rooms/atlas/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
        "Content-Type: application/json\r\nIdempotency-Key: door-7\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    async with connect(server.ws_url) as client:
        await client.subscribe(["room:atlas"])
        # The request reaches the server, and the connection breaks before the answer comes.
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request)
        await writer.drain()
        writer.transport.abort()
        # The operator's tablet does not know whether it worked: it sends the same thing again
        # (and again while the server says the first is still running).
        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                async with http.post(
                    server.url + "/api/rooms/atlas/status",
                    data=body,
                    headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": "door-7",
                             "Content-Type": "application/json"},
                ) as answer:  # fmt: skip
                    if answer.status != 409:
                        break
                await asyncio.sleep(0.05)
        assert answer.status == 200
        (event,) = await client.events(1)
        assert event["data"]["delay"] == 7
        with pytest.raises(TimeoutError):
            await client.events(1, timeout=1.0)  # once, not twice
