"""Per-address limits are opt-in: a venue's crowd behind one NAT address reconnects together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from feed.bench.loadgen import Generator
from feed.embedded import RedisProcess
from feed.settings import Settings
from tests.conftest import FeedServer

Servers = Callable[..., FeedServer]
CROWD = 1200  # past the 1000 per address that was the default


def test_no_per_address_limit_unless_one_is_set() -> None:
    assert Settings().max_connections_per_ip == 0


async def test_a_crowd_behind_one_address_connects_at_once_by_default(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)  # no FEED_MAX_CONNECTIONS_PER_IP: the default
    # Raw websocket clients from one address, all at once, each subscribed to venue: like the
    # phones of a venue behind its uplink's NAT after a wifi blip.
    crowd = Generator(server.ws_url, "venue", sources=("127.0.0.1",))
    try:
        opened = await asyncio.to_thread(crowd.connect, CROWD, 60)
        assert (opened["clients"], opened["failed"]) == (CROWD, 0)
        assert all(t.epoch is not None for t in crowd.tracks)  # each got its subscription
        assert not any(t.closes for t in crowd.tracks)
    finally:
        crowd.close_all()
    assert "too many connections" not in server.log()
