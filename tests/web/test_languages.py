"""Every language the program has (issue 12 §3): the pages show rooms, tracks and a moved
room's destination in the page's language, with the fallback announcements use."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from feed.embedded import RedisProcess
from publisher import Publisher
from tests.web.test_pages import Servers, browser  # noqa: F401 - the fixture

playwright = pytest.importorskip("playwright.async_api")
expect = playwright.expect
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DEMO = Path(__file__).resolve().parents[2] / "publisher" / "demo" / "smart-city-expo-2019.json"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)


async def test_rooms_and_a_moved_rooms_destination_in_the_pages_language(
    redis: RedisProcess,
    feed_server: Servers,
    browser: Any,  # noqa: F811
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(DEMO.read_bytes(), source=DEMO.name)
        pages = {}
        for path, lang in [
            ("/screen/room/atlas", "ar"),
            ("/screen/room/atlas", "fr"),
            ("/screen/hall", "ar"),
            ("/", "ar"),
            ("/screen/room/oasis", "en"),
        ]:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.errors = []
            page.on("pageerror", lambda e, page=page: page.errors.append(str(e)))
            await page.goto(f"{server.url}{path}?lang={lang}")
            await expect(page.locator("body")).to_have_attribute("data-online", "true")
            pages[path, lang] = page
        await expect(pages["/screen/room/atlas", "ar"].locator("#room")).to_have_text("أطلس")
        await expect(pages["/screen/room/atlas", "fr"].locator("#room")).to_have_text("Atlas")
        await expect(pages["/screen/room/oasis", "en"].locator("#room")).to_have_text("Oasis")
        hall = pages["/screen/hall", "ar"]
        await expect(hall.locator("[data-room=zerktouni] h2")).to_contain_text("الزرقطوني")
        await expect(pages["/", "ar"].locator("body")).to_contain_text("الواحة")
        await pub.status_of_program_room("atlas", "moved", moved_to="anfa")
        await expect(pages["/screen/room/atlas", "ar"].locator("#status")).to_contain_text("أنفا")
        await expect(pages["/screen/room/atlas", "fr"].locator("#status")).to_contain_text(
            "Déplacé en salle Anfa"
        )
        await expect(hall.locator("[data-room=atlas] .badge")).to_contain_text("أنفا")
        for page in pages.values():
            assert page.errors == []
