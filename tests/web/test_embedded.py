"""`feed serve` with no Redis configured: the embedded Redis, its data folder, and its lifetime."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import FeedServer, connect, feed_command, get

Servers = Callable[..., FeedServer]


def redis_pids(data_dir: Path) -> list[int]:
    """redis-server processes working in this data folder (Redis rewrites its command line, but
    it changes into its `dir`)."""
    folder = str(data_dir.resolve())
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == folder and "redis" in (entry / "comm").read_text():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def publish(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    return subprocess.run(
        feed_command("publish", *args), cwd=cwd, env=env, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip


async def test_serve_starts_an_embedded_redis_that_publish_finds(
    feed_server: Servers, tmp_path: Path
) -> None:
    server = feed_server(None)
    var = tmp_path / "var"
    assert (var / "redis.url").read_text().startswith("unix://")
    assert len(redis_pids(var)) == 1
    async with connect(server.ws_url) as client:
        await client.subscribe(["room:atlas"])
        done = publish(tmp_path, "status", "atlas", "live")
        assert done.returncode == 0, done.stderr
        (event,) = await client.events(1)
    assert event["data"]["status"] == "live"
    assert server.stop() == 0
    wait_until(lambda: not redis_pids(var))
    # The data outlives the process: a new server in the same folder has the same epoch and state.
    server.start()
    async with connect(server.ws_url) as client:
        got = await client.subscribe(["room:atlas"])
    assert got[0]["type"] == "snapshot" and got[0]["state"]["status"] == "live"
    assert (got[0]["epoch"], got[0]["seq"]) == (event["epoch"], 1)


def test_embedded_redis_dies_with_a_killed_server(feed_server: Servers, tmp_path: Path) -> None:
    server = feed_server(None)
    var = tmp_path / "var"
    assert len(redis_pids(var)) == 1
    server.stop(signal.SIGKILL)
    wait_until(lambda: not redis_pids(var))
    done = publish(tmp_path, "status", "atlas", "live")
    assert done.returncode == 1 and "no running `feed serve`" in done.stderr


async def test_a_second_server_shares_the_folder_and_takes_over(
    feed_server: Servers, tmp_path: Path
) -> None:
    first = feed_server(None)
    second = feed_server(None)
    var = tmp_path / "var"
    assert len(redis_pids(var)) == 1
    assert "sharing the embedded Redis" in second.log()
    async with connect(second.ws_url) as client:
        await client.subscribe(["room:atlas"])
        assert publish(tmp_path, "status", "atlas", "live").returncode == 0
        (before,) = await client.events(1)
        first.stop()
        # The second server starts the folder's Redis again and its client carries on.
        await asyncio.to_thread(wait_until, lambda: get(second.url + "/readyz")[0] == 200, 15)
        assert len(redis_pids(var)) == 1
        done = publish(tmp_path, "status", "atlas", "ended")
        assert done.returncode == 0, done.stderr
        (after,) = await client.events(1, timeout=15)
    assert (after["epoch"], after["seq"]) == (before["epoch"], 2)
    assert second.stop() == 0
    wait_until(lambda: not redis_pids(var))


async def test_a_killed_embedded_redis_is_started_again_and_nothing_is_lost(
    feed_server: Servers, tmp_path: Path
) -> None:
    server = feed_server(None)
    var = tmp_path / "var"
    async with connect(server.ws_url) as client:
        await client.subscribe(["room:atlas"])
        assert publish(tmp_path, "status", "atlas", "starting").returncode == 0
        (first,) = await client.events(1)
        await asyncio.sleep(1.5)  # appendfsync everysec: the event is on disk
        (victim,) = redis_pids(var)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in redis_pids(var), 5)
        # While it is down, a publish says so at once (exit 1), naming the running server.
        started = time.monotonic()
        down = publish(tmp_path, "status", "atlas", "live")
        if down.returncode != 0:  # unless the restart was quicker still
            assert down.returncode == 1 and time.monotonic() - started < 5
            assert "does not answer" in down.stderr or "cannot use Redis" in down.stderr
        wait_until(lambda: len(redis_pids(var)) == 1, 10)
        deadline = time.monotonic() + 10
        while (done := publish(tmp_path, "status", "atlas", "live")).returncode != 0:
            assert time.monotonic() < deadline, done.stderr
            await asyncio.sleep(0.2)
        # The client that stayed connected goes on: same epoch, the next seq.
        event = await client.until(lambda m: m.get("type") == "event", timeout=10)
        last = event[-1]
    assert (last["epoch"], last["seq"]) == (first["epoch"], first["seq"] + 1)
    assert get(server.url + "/readyz")[0] == 200
    log = server.log()
    assert log.count("embedded redis-server exited") == 1
    assert log.count("announcement expiry postponed") <= 1
