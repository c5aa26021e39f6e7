"""Sentinel URLs, replicas that must confirm a publish, and what a failover does to a channel.

Real servers: a primary, replicas and sentinels (tests/sentinels.py), all on loopback.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from feed import settings
from feed.bus import Bus, Published, check_url, redacted
from feed.errors import ConfigError, Unavailable
from feed.protocol import Position
from feed.sentinel import SentinelURL, parse
from publisher.api import Publisher
from tests.conftest import feed_command
from tests.sentinels import SERVICE, Node, Replicated, role, wait_for


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[list[Replicated]]:
    """Start topologies with `replicated.append(Replicated(...))` then `.start()`; all are
    killed at the end."""
    made: list[Replicated] = []
    yield made
    for topology in made:
        topology.stop()


def topology(
    made: list[Replicated], folder: Path, *, replicas: int = 2, sentinels: int = 0
) -> Replicated:
    one = Replicated(folder, replicas=replicas)
    made.append(one)
    one.start(sentinels=sentinels)
    return one


# ---- URLs and settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://s1:26379,s2:26380,s3/feed",
            SentinelURL((("s1", 26379), ("s2", 26380), ("s3", 26379)), "feed"),
        ),
        (
            "redis+sentinel://:p%40ss:w@10.0.0.1:5000/venue.main/3",
            SentinelURL((("10.0.0.1", 5000),), "venue.main", 3, None, "p@ss:w"),
        ),
        (
            "REDIS+SENTINEL://user:pw@[::1]:26379,[fd00::2]/my-service/0",
            SentinelURL((("::1", 26379), ("fd00::2", 26379)), "my-service", 0, "user", "pw"),
        ),
    ],
)
def test_sentinel_urls_are_read(url: str, expected: SentinelURL) -> None:
    assert parse(url) == expected
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1:26379",  # no service
        "redis+sentinel://s1:26379/",  # empty service
        "redis+sentinel://s1:26379,,s2/feed",  # an empty host
        "redis+sentinel://s1:99999/feed",  # port out of range
        "redis+sentinel://s1:port/feed",
        "redis+sentinel://s1/feed/zero",  # the database is a number
        "redis+sentinel://s1/feed/0/extra",
        "redis+sentinel://s1/fe ed",
        "redis+sentinel://s1/feed?db=1",
        "redis+sentinel://secret@s1/feed",  # a password without its colon
    ],
)
def test_bad_sentinel_urls_say_why(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_url(url)
    assert "redis+sentinel://" in caught.value.message


def test_a_bad_sentinel_url_never_shows_its_password() -> None:
    url = "redis+sentinel://:hunter2@s1:26379,s2:x/feed"
    assert "hunter2" not in redacted(url)
    with pytest.raises(ConfigError) as caught:
        settings.load(environ={"FEED_REDIS_URL": url})
    assert "FEED_REDIS_URL" in caught.value.message
    assert "hunter2" not in caught.value.message


def test_min_replicas_setting() -> None:
    assert settings.load(environ={}).redis_min_replicas is None
    assert settings.load(environ={"FEED_REDIS_MIN_REPLICAS": "auto"}).redis_min_replicas is None
    assert settings.load(environ={"FEED_REDIS_MIN_REPLICAS": "0"}).redis_min_replicas == 0
    assert settings.load(environ={"FEED_REDIS_MIN_REPLICAS": "2"}).redis_min_replicas == 2
    for bad in ("-1", "one", "1.5"):
        with pytest.raises(ConfigError, match="FEED_REDIS_MIN_REPLICAS"):
            settings.load(environ={"FEED_REDIS_MIN_REPLICAS": bad})
    # The default follows the URL: a Sentinel deployment has replicas to wait for.
    assert Bus("redis+sentinel://127.0.0.1:1/feed").min_replicas == 1
    assert Bus("redis://127.0.0.1:1/0").min_replicas == 0
    assert Bus("redis+sentinel://127.0.0.1:1/feed", min_replicas=0).min_replicas == 0


def test_the_command_line_takes_sentinel_urls(replicated: list[Replicated], tmp_path: Path) -> None:
    topo = topology(replicated, tmp_path / "redis", replicas=1, sentinels=1)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        feed_command("config", "check", "--redis-url", topo.sentinel_url),
        capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "redis+sentinel://" in done.stdout and "answers" in done.stdout
    done = subprocess.run(
        feed_command("publish", "status", "atlas", "live", "--redis-url", topo.sentinel_url),
        capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    bad = topo.sentinel_url.replace(f"/{SERVICE}/0", "/")
    done = subprocess.run(
        feed_command("publish", "status", "atlas", "live", "--redis-url", bad),
        capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "names the service" in done.stderr


# ---- replicas confirming publishes ----------------------------------------------------------


async def test_a_publish_waits_for_its_replicas_and_a_retry_makes_it_once(
    replicated: list[Replicated], tmp_path: Path
) -> None:
    topo = topology(replicated, tmp_path, replicas=2)
    bus = Bus(topo.primary.url, min_replicas=2)
    try:
        synced = await bus.sync("room:atlas")
        first = await bus.publish(
            "room:atlas", Position(synced.epoch, synced.seq), kind="status",
            data={"status": "live"}, ts=1, state={"status": "live"}, change_id="c1",
        )  # fmt: skip
        assert isinstance(first, Published) and first.seq == 1
        topo.nodes[2].pause(True)  # one replica hangs: 1 of 2 confirm
        started = time.monotonic()
        with pytest.raises(Unavailable, match="1 of the 2 replica"):
            await bus.publish(
                "room:atlas", Position(first.epoch, 1), kind="status",
                data={"status": "ended"}, ts=2, state={"status": "ended"}, change_id="c2",
            )  # fmt: skip
        assert time.monotonic() - started < 3  # bounded: WAIT gives up after a second
        topo.nodes[2].pause(False)
        # The retry of the same change (same id, the position it was computed from) finds it
        # made: one event, confirmed now.
        again = await bus.publish(
            "room:atlas", Position(first.epoch, 1), kind="status",
            data={"status": "ended"}, ts=3, state={"status": "ended"}, change_id="c2",
        )  # fmt: skip
        assert isinstance(again, Published) and again.seq == 2
        after = await bus.sync("room:atlas", after=Position(first.epoch, 0))
        assert [e.seq for e in after.events] == [1, 2]
        assert after.events[1].data == {"status": "ended"}
        # More replicas than there are: always refused, never a hang.
        async with Publisher(topo.primary.url, min_replicas=3) as many:
            with pytest.raises(Unavailable, match="FEED_REDIS_MIN_REPLICAS"):
                await many.status("atlas", "live")
    finally:
        await bus.aclose()


def test_feed_publish_exits_1_when_replicas_do_not_confirm(
    replicated: list[Replicated], tmp_path: Path
) -> None:
    topo = topology(replicated, tmp_path / "redis", replicas=1)
    topo.nodes[1].kill()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "FEED_REDIS_MIN_REPLICAS": "1",
    }
    started = time.monotonic()
    done = subprocess.run(
        feed_command("publish", "status", "atlas", "live", "--redis-url", topo.primary.url),
        capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "0 of the 1 replica(s) required" in done.stderr
    assert time.monotonic() - started < 10


# ---- failover -------------------------------------------------------------------------------


async def test_a_bus_follows_the_primary_through_a_failover(
    replicated: list[Replicated], tmp_path: Path
) -> None:
    """A coordinated failover (SENTINEL FAILOVER) turns the old primary into a replica while it
    still runs: pooled connections and the subscription must end up on the new primary."""
    topo = topology(replicated, tmp_path, replicas=2, sentinels=3)
    old = topo.primary
    bus = Bus(topo.sentinel_url)
    assert bus.min_replicas == 1
    received: list[int] = []
    lives: list[float] = []

    def on_message(raw: bytes) -> None:
        received.append(orjson.loads(raw)["seq"])

    follow = asyncio.create_task(bus.listen(lambda: lives.append(time.monotonic()),
                                            lambda _: None, on_message))  # fmt: skip
    pub = Publisher(topo.sentinel_url)
    try:
        await asyncio.wait_for(_until(lambda: lives), 10)
        assert (await pub.status("atlas", "live")).seq == 1
        await asyncio.wait_for(_until(lambda: received == [1]), 5)
        reply = topo.sentinels[0].command("SENTINEL", "FAILOVER", SERVICE)
        assert reply.startswith("+OK"), reply
        # Every sentinel says so (they agree within about 2 s: before, one may still name the
        # old primary, which runs and takes writes until it is demoted; docs/reliability.md).
        await asyncio.to_thread(wait_for, lambda: topo.agreed_primary() not in (None, old.port),
                                "the sentinels to agree on the new primary")  # fmt: skip
        # The old primary still runs, and stays writable until the sentinels demote it (up to
        # 10 s later): pooled connections to it must be left for the new one.
        started = time.monotonic()
        published = None
        while published is None:  # what a publisher does: retry while Redis is unavailable
            try:
                published = await pub.status("atlas", "ended")
            except Unavailable:
                assert time.monotonic() - started < 10
                await asyncio.sleep(0.1)
        new = topo.node_on(topo.primary_port() or 0)
        assert role(new) == "master" and new is not old
        # The promoted replica took over from the primary that last wrote the channel: a new
        # epoch (nothing was lost in a coordinated failover, but that cannot be told apart).
        assert published.seq == 1
        # The subscription left the old primary (which runs on) for the new one: it is made
        # again (the relay then catches up from history) and hears the new primary's events.
        await asyncio.wait_for(_until(lambda: len(lives) >= 2), 10)
        later = await pub.status("atlas", "cancelled")
        assert (later.epoch, later.seq) == (published.epoch, 2)
        await asyncio.wait_for(_until(lambda: received[-1:] == [2]), 5)
        synced = await bus.sync("room:atlas")
        assert (synced.epoch, synced.seq) == (published.epoch, 2)
        assert synced.state["status"] == "cancelled"
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
        await pub.aclose()
        await bus.aclose()


async def test_a_replica_answering_readonly_is_left_for_the_primary(
    replicated: list[Replicated], tmp_path: Path
) -> None:
    """A plain URL naming a server that became a replica: the publish is refused clearly, and
    the connections are dropped so that the next one finds whatever the URL leads to."""
    topo = topology(replicated, tmp_path, replicas=1)
    replica = topo.nodes[1]
    bus = Bus(topo.primary.url)
    try:
        pub = Publisher(topo.primary.url)
        await pub.status("atlas", "live")
        # The primary becomes a replica of its replica (which is promoted first).
        assert replica.command("REPLICAOF", "NO", "ONE").startswith("+OK")
        assert topo.primary.command("REPLICAOF", "127.0.0.1", str(replica.port)).startswith("+OK")
        with pytest.raises(Unavailable, match="READONLY"):
            await pub.status("atlas", "ended")
        await pub.aclose()
        # Pointed at the new primary, the same kind of publish goes through.
        async with Publisher(replica.url) as moved:
            assert (await moved.status("atlas", "ended")).seq >= 1
    finally:
        await bus.aclose()


async def test_a_promoted_replica_that_lacks_events_moves_the_channel_to_a_new_epoch(
    replicated: list[Replicated], tmp_path: Path
) -> None:
    """The replica is cut off, the primary goes on (clients see seqs 3 and 4), then the replica
    is promoted without them. Whoever touches the channel first on it, even a publisher that
    knows nothing, moves it to a new epoch: seq 3 never names two different events."""
    topo = topology(replicated, tmp_path, replicas=1)
    replica = topo.nodes[1]
    async with Publisher(topo.primary.url) as pub:
        for status in ("starting", "live"):
            await pub.status("atlas", status)
        await asyncio.to_thread(
            wait_for, lambda: _offset(replica) == _offset(topo.primary), "the replica to catch up"
        )
        assert replica.command("REPLICAOF", "NO", "ONE").startswith("+OK")  # promoted, cut off
        for status in ("delayed", "ended"):
            lost = await pub.status("atlas", status, delay=5 if status == "delayed" else 0)
        assert lost.seq == 4
    fresh = Publisher(replica.url)
    async with fresh:
        published = await fresh.status("atlas", "cancelled")
    assert published.epoch != lost.epoch and published.seq == 1
    bus = Bus(replica.url)
    try:
        synced = await bus.sync("room:atlas")
        assert (synced.epoch, synced.seq) == (published.epoch, 1)
        assert synced.state["status"] == "cancelled"
        # A server that saw seq 4 and syncs now stays in the new epoch (nothing moves again).
        again = await bus.sync("room:atlas", known=Position(lost.epoch, 4))
        assert again.epoch == published.epoch
    finally:
        await bus.aclose()


async def test_a_restarted_primary_keeps_its_epochs(tmp_path: Path) -> None:
    """The other side of the rule above: a Redis restarted from its own files is no promoted
    replica, and its channels keep their epoch (clients go on with the next seq)."""
    topo = Replicated(tmp_path, replicas=0)
    try:
        topo.start()
        async with Publisher(topo.primary.url) as pub:
            first = await pub.status("atlas", "live")
        topo.primary.proc.terminate()  # type: ignore[union-attr]  # SIGTERM flushes the file
        topo.primary.proc.wait(10)  # type: ignore[union-attr]
        topo.primary.start()
        async with Publisher(topo.primary.url) as pub:
            second = await pub.status("atlas", "ended")
        assert (second.epoch, second.seq) == (first.epoch, first.seq + 1)
    finally:
        topo.stop()


def _offset(node: Node) -> int:
    for line in node.command("INFO", "replication").split("\r\n"):
        if line.startswith(("master_repl_offset:", "slave_repl_offset:")):
            return int(line.split(":", 1)[1])
    return -1


async def _until(condition: Callable[[], object]) -> None:
    while True:
        if condition():
            return
        await asyncio.sleep(0.02)
