"""Two days on a door screen and a hall screen, in a few minutes (issue 12 §7).

    .venv/bin/python -m tests.web.soak [--events 20000] [--rate 400] [--every 1000] [--json FILE]

Starts a private Redis and a real `feed serve`, imports a program, opens a door screen
(/screen/room/atlas) and the hall (/screen/hall) in Debian's Chromium, then publishes EVENTS
events through the real publisher at about RATE a second: room statuses, announcements (to
everyone or to rooms, now and then an emergency), their retractions, and program updates (a room's
sessions, retitled). Every EVERY events, and once all announcements are retracted at the end, it
asks each page's CDP Performance.getMetrics for the JS heap in use and the DOM node count, right
after a full garbage collection, and prints them (and writes them as JSON with --json).

The same measurement serves tests/web/test_soak.py, which checks that the DOM returns to its size
once the announcements are retracted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from playwright.async_api import Browser, CDPSession, Page, async_playwright, expect

from feed import keys
from feed.embedded import RedisProcess, free_port
from feed.models import Status
from publisher import Publisher
from tests.conftest import FeedServer

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
EXPO = Path(__file__).resolve().parent / "fixtures" / "expo.json"
ROOMS = ("atlas", "anfa")  # the rooms of the program above
METRICS = ("JSHeapUsedSize", "Nodes", "JSEventListeners", "Documents")


@dataclass(frozen=True, slots=True)
class Sample:
    events: int  # published so far
    page: str  # "door" or "hall"
    heap_bytes: int
    nodes: int
    listeners: int
    documents: int


class Screen:
    """One page and its CDP session, measured after a full garbage collection."""

    def __init__(self, name: str, page: Page, cdp: CDPSession) -> None:
        self.name, self.page, self.cdp = name, page, cdp
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    @classmethod
    async def open(cls, browser: Browser, name: str, url: str) -> Screen:
        page = await browser.new_page(viewport={"width": 1920, "height": 1080})
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Performance.enable")
        screen = cls(name, page, cdp)
        await page.goto(url)
        await expect(page.locator("body")).to_have_attribute("data-online", "true", timeout=15_000)
        return screen

    async def measure(self, events: int) -> Sample:
        # Twice: the first collection may only finalise what the second frees.
        for _ in range(2):
            await self.cdp.send("HeapProfiler.collectGarbage")
        got = await self.cdp.send("Performance.getMetrics")
        values = {m["name"]: m["value"] for m in got["metrics"] if m["name"] in METRICS}
        return Sample(
            events,
            self.name,
            int(values["JSHeapUsedSize"]),
            int(values["Nodes"]),
            int(values["JSEventListeners"]),
            int(values["Documents"]),
        )

    async def settled(self, shown: int) -> None:
        """Wait until the page shows `shown` announcements (the feed has caught up)."""
        # Locators, not wait_for_function: the pages' CSP forbids the eval that polling uses.
        await expect(self.page.locator("#announcements li")).to_have_count(shown, timeout=60_000)
        await expect(self.page.locator("#emergency")).to_be_hidden(timeout=60_000)


@contextlib.asynccontextmanager
async def venue(folder: Path) -> AsyncIterator[tuple[str, str]]:
    """A private Redis and a `feed serve` on it, with the test program imported: (redis, http)."""
    redis = RedisProcess(folder / "redis", port=free_port(), appendonly=False)
    redis.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    server = FeedServer(free_port(), ["--redis-url", redis.url], folder, env)
    try:
        server.start()
        async with Publisher(redis.url) as pub:
            await pub.import_program(EXPO.read_bytes(), source="expo.json")
        yield redis.url, server.url
    finally:
        server.stop()
        redis.kill()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


def sessions_around(now: datetime, version: int, rng: random.Random) -> list[dict[str, Any]]:
    """A day of sessions around `now` (so the screens show one on now and one next), retitled
    by each program update."""
    start = (now - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
    out = []
    for i in range(12):
        begins = start + timedelta(minutes=50 * i)
        words = rng.sample(["Open", "data", "mobilité", "الذكاء", "villes", "IA", "énergie"], 3)
        out.append(
            {
                "id": f"soak-{i}",
                "title": f"{' '.join(words)} v{version}",
                "titles": {"fr": f"Séance {i} v{version}", "ar": f"جلسة {i}"},
                "start": begins.isoformat(),
                "end": (begins + timedelta(minutes=45)).isoformat(),
                "speakers": [f"Speaker {rng.randrange(100)}"],
                "track": rng.choice(["Mobilité", "Énergie", None]),
                "language": rng.choice(["fr", "ar", "en"]),
                "type": None,
            }
        )
    return out


class Traffic:
    """The events of a long event, drawn from a seeded generator: each `step` publishes one
    intent and returns how many events (channel messages) it made."""

    def __init__(self, pub: Publisher, seed: int = 12) -> None:
        self.pub = pub
        self.rng = random.Random(seed)
        self.live: list[str] = []  # announcements not yet retracted
        self.programs = 0

    async def step(self) -> int:
        roll = self.rng.random()
        if roll < 0.4:
            return await self.status()
        if roll < 0.7 or not self.live:
            return await self.announce()
        if roll < 0.92:
            return await self.retract(self.live.pop(self.rng.randrange(len(self.live))))
        return await self.program()

    async def status(self) -> int:
        status = self.rng.choice([s for s in Status if s != Status.MOVED])
        delay = self.rng.choice([0, 5, 10]) if status == Status.DELAYED else 0
        await self.pub.status(self.rng.choice(ROOMS), status, delay=delay)
        return 1

    async def announce(self) -> int:
        n = len(self.live)
        rooms = self.rng.choice([[], [], ["atlas"], ["anfa"], list(ROOMS)])
        priority = (
            "emergency"
            if self.rng.random() < 0.002
            else self.rng.choice(["info", "info", "important"])
        )
        text = {
            "fr": f"Annonce {n} : la séance reprend à 10 h {self.rng.randrange(60):02d}",
            "ar": f"إعلان {n}: تستأنف الجلسة",
            "en": f"Notice {n}: https://example.org/{'x' * self.rng.randrange(1, 120)}",
        }
        made = await self.pub.announce(text, rooms=rooms, priority=priority)
        self.live.append(made["id"])
        return max(1, len(rooms))

    async def retract(self, announcement_id: str) -> int:
        return len(await self.pub.retract(announcement_id))

    async def program(self) -> int:
        self.programs += 1
        room = self.rng.choice(ROOMS)
        sessions = sessions_around(datetime.now(UTC), self.programs, self.rng)
        data = {"room": {"id": room, "name": room.title()}, "sessions": sessions, "changes": []}
        await self.pub.publish(keys.room_channel(room), "program", data)
        return 1

    async def retract_all(self) -> int:
        done = 0
        while self.live:
            done += await self.retract(self.live.pop())
        return done


async def soak(events: int, rate: float, every: int, out: Path | None) -> list[Sample]:
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory() as folder:
        async with venue(Path(folder)) as (redis_url, url), chromium() as browser:
            screens = [
                await Screen.open(browser, "door", f"{url}/screen/room/atlas?lang=fr"),
                await Screen.open(browser, "hall", f"{url}/screen/hall?lang=fr"),
            ]
            for screen in screens:
                samples.append(await screen.measure(0))
            report(samples[-2:])
            async with Publisher(redis_url) as pub:
                traffic = Traffic(pub)
                published, started, mark = 0, time.monotonic(), every
                while published < events:
                    published += await traffic.step()
                    ahead = published / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                    if published >= mark:
                        mark += every
                        for screen in screens:
                            samples.append(await screen.measure(published))
                        report(samples[-2:])
                published += await traffic.retract_all()
                for screen in screens:
                    await screen.settled(0)
                    samples.append(await screen.measure(published))
                report(samples[-2:])
                took = time.monotonic() - started
            errors = [f"{s.name}: {e}" for s in screens for e in s.errors]
    print(f"{published} events in {took:.0f} s ({published / took:.0f}/s)")
    summarise(samples)
    if errors:
        print("page errors:", *errors, sep="\n  ")
    if out is not None:
        figures = {"events": published, "seconds": round(took, 1), "page_errors": errors}
        figures["samples"] = [asdict(s) for s in samples]
        await asyncio.to_thread(out.write_bytes, orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return samples


def report(samples: list[Sample]) -> None:
    for s in samples:
        print(
            f"{s.events:>7} events  {s.page:<4}  heap {s.heap_bytes / 2**20:6.2f} MiB"
            f"  nodes {s.nodes:>5}  listeners {s.listeners:>4}  documents {s.documents}",
            flush=True,
        )


def summarise(samples: list[Sample]) -> None:
    for page in ("door", "hall"):
        mine = [s for s in samples if s.page == page]
        first, last = mine[0], mine[-1]
        heap = [s.heap_bytes / 2**20 for s in mine]
        nodes = [s.nodes for s in mine]
        print(
            f"{page}: heap {first.heap_bytes / 2**20:.2f} MiB at start, {min(heap):.2f}-"
            f"{max(heap):.2f} MiB during, {last.heap_bytes / 2**20:.2f} MiB at the end; DOM nodes"
            f" {first.nodes} at start, {min(nodes)}-{max(nodes)} during, {last.nodes} at the end"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.web.soak", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=400.0, help="events a second, at most")
    parser.add_argument("--every", type=int, default=1000, help="measure every N events")
    parser.add_argument("--json", type=Path, help="write the figures there")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print("Chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    if args.events < 1 or args.rate <= 0 or args.every < 1:
        print("--events, --rate and --every must be positive", file=sys.stderr)
        return 2
    asyncio.run(soak(args.events, args.rate, args.every, args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
