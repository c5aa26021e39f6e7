"""`feed serve --workers N`: processes sharing one port, each a whole server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidMessage

from feed.embedded import RedisProcess
from publisher import Publisher
from tests.conftest import Client, FeedServer, connect
from web.cli import EXIT_INVALID, main

Servers = Callable[..., FeedServer]


def workers(server: FeedServer) -> list[int]:
    """The pids of the server's worker processes."""
    assert server.proc is not None
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


def listening(pid: int, port: int) -> bool:
    """Whether the process holds a socket listening on `port` (its own SO_REUSEPORT socket)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    return False


async def reconnect(stack: contextlib.AsyncExitStack, server: FeedServer) -> Client:
    """Connect again as the pages do, trying again at once if the first attempt is dropped: a
    connection can be lost in the kernel while the killed worker's listening socket goes away."""
    for attempt in range(3):
        try:
            return await stack.enter_async_context(connect(server.ws_url))
        except (OSError, InvalidMessage):
            if attempt == 2:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


async def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_workers_share_the_port_and_all_deliver_in_order(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, "--workers", "2")
    await wait_for(lambda: len(workers(server)) == 2)
    # Both must be listening before the kernel can spread connections over them.
    await wait_for(lambda: all(listening(pid, server.port) for pid in workers(server)))
    before = {pid: sockets(pid) for pid in workers(server)}
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(server.ws_url)) for _ in range(16)]
        for client in clients:
            await client.subscribe(["room:atlas"])
        # The kernel spread the connections: both workers hold some.
        assert all(sockets(pid) > count for pid, count in before.items())
        async with Publisher(redis.url) as pub:
            for status in ("starting", "live", "delayed", "full", "ended"):
                await pub.status("atlas", status)
        for client in clients:
            events = await client.events(5)
            assert [e["data"]["status"] for e in events] == [
                "starting", "live", "delayed", "full", "ended"
            ]  # fmt: skip
            assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]


async def test_a_killed_worker_is_replaced_and_its_clients_resume_elsewhere(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, "--workers", "2")
    await wait_for(lambda: len(workers(server)) == 2)
    await wait_for(lambda: all(listening(pid, server.port) for pid in workers(server)))
    async with contextlib.AsyncExitStack() as stack, Publisher(redis.url) as pub:
        clients = [await stack.enter_async_context(connect(server.ws_url)) for _ in range(8)]
        for client in clients:
            await client.subscribe(["room:atlas"])
        await pub.status("atlas", "starting")
        for client in clients:
            await client.events(1)
        victim = workers(server)[0]
        os.kill(victim, signal.SIGKILL)
        await pub.status("atlas", "live")  # while some clients are cut off
        resumed = 0
        for i, client in enumerate(clients):
            try:
                (event,) = await client.events(1, timeout=2.0)
                assert event["seq"] == 2
            except (ConnectionClosed, TimeoutError):
                # This one was on the killed worker: it resumes on the one that is left.
                clients[i] = again = await reconnect(stack, server)
                got = await again.subscribe(
                    ["room:atlas"], since={"room:atlas": {"epoch": event_epoch(client), "seq": 1}}
                )
                # A worker started again meanwhile may say it is live now (`health`) first.
                got = [m for m in got if m["type"] != "health"]
                assert [m["type"] for m in got] == ["event", "subscribed"]
                assert got[0]["seq"] == 2 and got[1]["resumed"] is True
                resumed += 1
        assert resumed > 0
        # The supervisor starts a new worker in the dead one's place.
        await wait_for(lambda: len(workers(server)) == 2 and victim not in workers(server))
    assert server.stop() == 0
    assert "worker 0 exited with -9" in server.log() or "worker 1 exited with -9" in server.log()


def event_epoch(client: Client) -> str:
    return str(next(m["epoch"] for m in client.seen if m["type"] in ("subscribed", "event")))


async def test_stopping_the_supervisor_closes_every_client_with_1001(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, "--workers", "2")
    await wait_for(lambda: len(workers(server)) == 2)
    pids = workers(server)
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(server.ws_url)) for _ in range(6)]
        for client in clients:
            await client.subscribe(["venue"])
        assert server.stop() == 0
        for client in clients:
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv(timeout=5.0)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert not any(map(alive, pids))


@pytest.mark.parametrize("args", [["--workers", "2", "--port", "0"], ["--workers", "0"]])
def test_workers_need_a_fixed_port_and_at_least_one(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--redis-url", "redis://127.0.0.1:1", *args]) == EXIT_INVALID
    assert "workers" in capsys.readouterr().err
