"""`feed watch`: the terminal client prints the feed and resumes across a server restart."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from feed.embedded import RedisProcess
from publisher import Publisher
from tests.conftest import FeedServer, feed_command

Servers = Callable[..., FeedServer]


WaitFor = Callable[..., list[str]]


@contextmanager
def watching(*args: str) -> Iterator[WaitFor]:
    """Run `feed watch`; yields `wait_for(text)`, which returns the stdout lines up to `text`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    proc = subprocess.Popen(
        feed_command("watch", *args),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []

    def wait_for(text: str, timeout: float = 10.0) -> list[str]:
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{text!r} not printed; got {seen}") from None
            seen.append(line)
            got.append(line)
            if text in line:
                return got

    try:
        yield wait_for
    finally:
        proc.terminate()
        proc.wait(10)


async def test_watch_prints_snapshot_events_and_resumes(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "starting", session="s-1")
        with watching("--url", server.url) as wait_for:  # no channel named: all of them
            wait_for("watching venue, room:atlas")
            wait_for("room:atlas       snapshot #1")
            await pub.status("atlas", "delayed", delay=10)
            wait_for("#2 status  delayed +10 min")
            await pub.announce("Keynote moved", rooms=["atlas"], priority="important")
            wait_for("[important] Keynote moved  (to atlas")

            server.stop()
            wait_for("disconnected; resuming")
            await pub.status("atlas", "live")  # while the watcher is away
            server.start()
            printed = wait_for("#4 status  live", timeout=20)
    assert not [line for line in printed if "snapshot" in line], printed


async def test_watching_everything_follows_rooms_that_appear_later(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        with watching("--url", server.url) as wait_for:
            wait_for("venue            snapshot #0")
            await pub.status("orion", "full")
            wait_for("now also watching room:orion")
            wait_for("room:orion       snapshot #1")


def test_times_are_printed_in_venue_time_from_the_servers_offsets() -> None:
    from web.watch import describe  # noqa: PLC0415

    event = {
        "type": "event", "channel": "venue", "seq": 3, "kind": "retract",
        "ts": 1_796_644_800_000, "data": {"id": "a1"},  # 2026-12-07T12:00:00Z
    }  # fmt: skip
    line = describe(event, [[0, 60], [1_796_648_400_000, 0]])
    assert line is not None and line.startswith("13:00:00  venue")
    assert (describe(event, [[0, -300]]) or "").startswith("07:00:00")


def test_a_snapshot_line_says_what_the_screens_show() -> None:
    from web.watch import describe  # noqa: PLC0415

    def snapshot(state: dict[str, object]) -> str:
        msg = {"type": "snapshot", "channel": "room:atlas", "seq": 4, "epoch": "e", "state": state}
        return describe(msg) or ""

    base = {"status": "full", "delay": 0, "session": "s1", "announcements": []}
    held = {**base, "shown": {"source": "operator", "status": "full", "session": "s1"}}
    assert "full (session s1)" in snapshot(held)
    over = {**base, "shown": {"source": "program", "status": "on", "session": "s2"}}
    line = snapshot(over)
    assert "program: on now (session s2)" in line and "full no longer holds" in line
