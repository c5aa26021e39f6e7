"""Venue time has one authority, the server: printed program times on every page, whatever the
tz data of the server's system or of the browser.

Africa/Casablanca moved from +01:00 to +00:00 on 2026-09-20 (IANA 2026f, in the tzdata wheel we
lock); a system whose zone files are older still says +01:00, and so may a kiosk's browser. With
`FEED_TZDATA=system` on such a system the server keeps +01:00, and the pages must follow it, not
their own (newer) data: a time printed 10:00 in the file shows as 10:00 either way.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest

from feed import zones
from feed.embedded import RedisProcess
from tests.conftest import FeedServer, connect, feed_command
from tests.web.test_pages import CHROMIUM, FLAGS, expect, playwright

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)
Servers = Callable[..., FeedServer]
ZONE = "Africa/Casablanca"


def frab(sessions: list[tuple[str, datetime, datetime]]) -> bytes:
    """A frab XML export with no zone of its own: wall-clock times only, as printed."""
    first, last = sessions[0][1], sessions[-1][2]
    events = "".join(
        f"""<event guid="00000000-0000-4000-8000-00000000000{i}" id="{i}">
        <start>{start:%H:%M}</start><duration>{(end - start).seconds // 3600:02d}:"""
        f"""{(end - start).seconds // 60 % 60:02d}</duration><room>Atlas</room>
        <title>{escape(title)}</title><type>talk</type><language>fr</language>
        <persons><person id="{i}">Speaker {i}</person></persons></event>"""
        for i, (title, start, end) in enumerate(sessions, 1)
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<schedule><version>1</version>
  <conference><acronym>tzcon</acronym><title>Time Conference</title>
    <start>{first:%Y-%m-%d}</start><end>{last:%Y-%m-%d}</end><days>1</days></conference>
  <day index="1" date="{first:%Y-%m-%d}" start="{first:%Y-%m-%dT%H:%M:%S}"
       end="{last:%Y-%m-%dT%H:%M:%S}"><room name="Atlas">{events}</room></day>
</schedule>""".encode()


@pytest.fixture
async def browsers() -> AsyncIterator[Any]:
    async with playwright.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        await chromium.close()


@pytest.mark.parametrize(
    "case",
    # (the server's FEED_TZDATA, the browser's own zone)
    [("auto", "Pacific/Auckland"), ("system", "America/New_York"), ("wheel", ZONE)],
)
async def test_printed_times_show_on_every_page_whatever_the_browser_zone(
    case: tuple[str, str],
    redis: RedisProcess,
    feed_server: Servers,
    browsers: Any,
    tmp_path: Path,
) -> None:
    tzdata, browser_zone = case
    tz = zones.choose(tzdata).zone(ZONE)  # what the server will trust, for the expected texts
    local_now = datetime.now(tz).replace(tzinfo=None)
    start = local_now.replace(second=0, microsecond=0) - timedelta(
        minutes=10 + local_now.minute % 5
    )
    middle, end = start + timedelta(minutes=60), start + timedelta(minutes=90)
    program = tmp_path / "tz.xml"
    program.write_bytes(
        frab([("Séance en cours", start, middle), ("Séance suivante", middle, end)])
    )
    env = {"FEED_TZDATA": tzdata}
    done = await asyncio.create_subprocess_exec(
        *feed_command("schedule", "import", str(program), "--zone", ZONE),
        *("--redis-url", redis.url),
        env={**os.environ, **env},
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(done.communicate(), 30)
    assert done.returncode == 0, errors.decode()
    server = feed_server(redis.url, env=env)

    context = await browsers.new_context(
        timezone_id=browser_zone, viewport={"width": 1280, "height": 900}
    )
    try:
        door = await context.new_page()
        await door.goto(f"{server.url}/screen/room/atlas?lang=fr")
        now_box = door.locator("#now")
        await expect(now_box).to_contain_text("Séance en cours")
        await expect(now_box).to_contain_text(f"{start:%H:%M}\u2013{middle:%H:%M}")
        await expect(door.locator("#next")).to_contain_text(f"{middle:%H:%M}")
        clocks = {f"{local_now + timedelta(minutes=m):%H:%M}" for m in (0, 1, 2)}
        assert (await door.locator("#clock").text_content()) in clocks

        hall = await context.new_page()
        await hall.goto(f"{server.url}/screen/hall?lang=fr")
        await expect(hall.locator("[data-room=atlas]")).to_contain_text(f"{middle:%H:%M}")
        assert (await hall.locator("#clock").text_content()) in clocks

        phone = await context.new_page()
        await phone.goto(f"{server.url}/?lang=fr")
        await expect(phone.locator("[data-room=atlas]")).to_contain_text(f"{middle:%H:%M}")
        assert (await phone.locator("#clock").text_content()) in clocks
    finally:
        await context.close()


async def test_the_hello_carries_the_venue_offsets_the_server_trusts(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, env={"FEED_VENUE_ZONE": ZONE, "FEED_TZDATA": "system"})
    async with connect(server.ws_url) as client:
        hello = client.seen[0]
    assert hello["type"] == "hello"
    venue = hello["venue"]
    assert venue["zone"] == ZONE and venue["tzdata"] == zones.system_version()
    system = zones.choose("system").zone(ZONE)
    for at, minutes in venue["offsets"][1:]:
        when = datetime.fromtimestamp(at / 1000, system)
        assert when.utcoffset() == timedelta(minutes=minutes)
        assert (when - timedelta(minutes=1)).astimezone(system).utcoffset() != when.utcoffset()
