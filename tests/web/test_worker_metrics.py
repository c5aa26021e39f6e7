"""`feed serve --workers 2`: one scrape of /metrics reports every worker (issue 14 §4)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from feed.embedded import RedisProcess
from tests.conftest import FeedServer, connect
from tests.web.test_workers import listening, wait_for, workers

CLIENTS = 24


def scrape(server: FeedServer) -> dict[str, dict[str, float]]:
    """{metric sample name: {worker: value}} summed over other labels, from one answer.

    A scrape that lands on a worker as it is killed is reset, as Prometheus's would be; like
    Prometheus at its next interval, try again (on whichever worker the kernel picks)."""
    for attempt in range(3):
        try:
            with urllib.request.urlopen(server.url + "/metrics", timeout=5) as answer:
                text = answer.read().decode()
            break
        except (ConnectionError, urllib.error.URLError):
            if attempt == 2:
                raise
            time.sleep(0.2)
    found: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name][sample.labels.get("worker", "")] += sample.value
    return found


async def test_one_scrape_reports_every_worker(
    redis: RedisProcess, feed_server: Callable[..., FeedServer]
) -> None:
    server = feed_server(redis.url, "--workers", "2")
    await wait_for(lambda: len(workers(server)) == 2)
    await wait_for(lambda: all(listening(pid, server.port) for pid in workers(server)))
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(CLIENTS):
            client = await stack.enter_async_context(connect(server.ws_url))
            await client.subscribe(["venue"])

        def seen() -> dict[str, float]:
            return dict(scrape(server)["feed_connections"])

        # Whichever worker takes the scrape, the answer holds both, and their connections add
        # up to every client (the kernel spreads them, unevenly).
        await wait_for(lambda: sum(seen().values()) == CLIENTS)
        for _ in range(6):
            found = scrape(server)
            assert set(found["feed_connections"]) == {"0", "1"}
            assert sum(found["feed_connections"].values()) == CLIENTS
            assert found["feed_workers_answered"][""] == 2
            assert found["feed_workers_expected"][""] == 2
            # Every process's own figures, told apart (two pids, both subscribed to Redis).
            assert set(found["process_resident_memory_bytes"]) == {"0", "1"}
            assert found["feed_ready"] == {"0": 1.0, "1": 1.0}
        # A worker that is gone is left out of the answer, which says so; once started
        # again it is back.
        os.kill(workers(server)[0], signal.SIGKILL)
        answered = await asyncio.to_thread(lambda: scrape(server)["feed_workers_answered"][""])
        assert answered in (1, 2)  # 2 only if its replacement already runs
        await wait_for(lambda: scrape(server)["feed_workers_answered"][""] == 2, timeout=20)
