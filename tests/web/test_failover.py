"""Redis failover through a real `feed serve` (issue 14 §1-2): nothing acknowledged is lost,
clients never skip an event silently, and a refused publish retried completes once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import FeedServer, connect
from tests.sentinels import Replicated
from tests.web import failover


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[Callable[..., Replicated]]:
    made: list[Replicated] = []

    def start(replicas: int) -> Replicated:
        topology = Replicated(tmp_path / f"redis{len(made)}", replicas=replicas)
        made.append(topology)
        topology.start()
        return topology

    yield start
    for topology in made:
        topology.stop()


async def test_a_killed_primary_loses_nothing_acknowledged_and_clients_follow(
    tmp_path: Path,
) -> None:
    """A primary, two replicas, three sentinels; 300 websocket clients on six rooms; statuses
    at 20 per second through the HTTP API; SIGKILL the primary (tests/web/failover.py)."""
    started = time.monotonic()
    report = await failover.run(tmp_path, clients=300, rate=20.0, before=3.0, after=3.0)
    print(report.to_json(), f"in {time.monotonic() - started:.1f} s")
    assert report.acknowledged > 0 and report.attempts > report.acknowledged
    assert report.recovery_s is not None and report.recovery_s < failover.RECOVERY_LIMIT
    assert report.jumps == []
    assert report.stale_clients == []
    assert report.wrong_rooms == []
    # The promoted replica took over from the primary that wrote every room: each room moved
    # to a new epoch, and every client got a snapshot of each room it follows.
    assert report.epochs_changed == len(failover.ROOMS)
    assert report.snapshots_after_kill >= 2 * 300


async def test_a_publish_refused_for_want_of_replicas_completes_once_when_retried(
    replicated: Callable[..., Replicated],
    feed_server: Callable[..., FeedServer],
    tmp_path: Path,
) -> None:
    topology = replicated(1)
    replica = topology.nodes[1]
    server = feed_server(topology.primary.url, env={"FEED_REDIS_MIN_REPLICAS": "1"})
    token = await asyncio.to_thread(failover.token, topology.primary.url, server.env, tmp_path)
    url = f"{server.url}/api/rooms/atlas/status"
    async with (
        connect(server.ws_url) as client,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
    ):
        await client.subscribe(["room:atlas"])
        async with http.post(url, json={"status": "live"}) as answer:
            assert answer.status == 200
            first = await answer.json()
        await client.events(1)
        replica.pause(True)  # the replica hangs: WAIT cannot be satisfied
        change = {"status": "delayed", "delay_min": 10, "session": "keynote"}
        key = {"Idempotency-Key": "delay-keynote"}
        async with http.post(url, json=change, headers=key) as answer:
            assert answer.status == 503
            body = await answer.json()
        assert body["error"]["code"] == "unavailable"
        assert "replica" in body["error"]["message"]
        replica.pause(False)
        async with http.post(url, json=change, headers=key) as answer:
            assert answer.status == 200
            done = await answer.json()
        # One change: the one the first attempt made, now confirmed, at the next seq.
        assert (done["epoch"], done["seq"]) == (first["epoch"], first["seq"] + 1)
        async with http.post(url, json=change, headers=key) as answer:
            assert answer.status == 200 and answer.headers["Idempotent-Replayed"] == "true"
            assert await answer.json() == done
        async with http.post(url, json={"status": "live"}) as answer:
            assert (await answer.json())["seq"] == first["seq"] + 2
        events = await client.events(2)
        assert [e["seq"] for e in events] == [first["seq"] + 1, first["seq"] + 2]
        assert events[0]["data"]["session"] == "keynote"
        with pytest.raises(TimeoutError):  # and nothing else
            await asyncio.wait_for(client.events(1), 0.5)
