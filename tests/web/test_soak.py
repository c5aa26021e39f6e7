"""A screen that runs for days keeps its size: once the announcements it showed are retracted, its
DOM is back to what it was (measured as `python -m tests.web.soak` does, with CDP after a full
garbage collection). The long run itself is `python -m tests.web.soak` (docs/performance.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from feed.embedded import RedisProcess
from publisher import Publisher
from tests.conftest import FeedServer
from tests.web.soak import CHROMIUM, EXPO, Screen, chromium

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)
Servers = Callable[..., FeedServer]
ANNOUNCEMENTS = 200
MARGIN = 10  # DOM nodes: a text node more or less in the clock or a banner


async def test_the_dom_returns_to_its_size_once_the_announcements_are_retracted(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub, chromium() as browser:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
        screens = [
            await Screen.open(browser, "door", f"{server.url}/screen/room/atlas?lang=fr"),
            await Screen.open(browser, "hall", f"{server.url}/screen/hall?lang=fr"),
        ]
        # One announcement shown and gone first, so that what a page builds once is in the
        # baseline, not counted as growth.
        first = await pub.announce("Bienvenue")
        for screen in screens:
            await screen.settled(1)
        await pub.retract(first["id"])
        for screen in screens:
            await screen.settled(0)
        before = {s.name: await s.measure(0) for s in screens}

        made = []
        for i in range(ANNOUNCEMENTS):
            rooms = ["atlas"] if i % 2 else []
            text = {"fr": f"Annonce {i}", "ar": f"إعلان {i}", "en": f"Notice {i} " + "x" * i}
            made.append(await pub.announce(text, rooms=rooms, priority="important"))
        # Each channel keeps its last 50: the door shows the room's and the venue's.
        await screens[0].settled(100)
        await screens[1].settled(50)
        peak = {s.name: await s.measure(ANNOUNCEMENTS) for s in screens}
        for announced in made:
            await pub.retract(announced["id"])
        for screen in screens:
            await screen.settled(0)
        after = {s.name: await s.measure(2 * ANNOUNCEMENTS) for s in screens}

    for name, start in before.items():
        assert peak[name].nodes > start.nodes + 100, f"{name}: the test showed nothing"
        assert abs(after[name].nodes - start.nodes) <= MARGIN, (start, peak[name], after[name])
        assert after[name].listeners == start.listeners, (start, after[name])
        assert after[name].documents == 1
    assert [e for s in screens for e in s.errors] == []
