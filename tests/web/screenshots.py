"""Screenshots of the pages for docs/screenshots/, from the demo in Debian's Chromium.

    .venv/bin/python -m tests.web.screenshots

Starts `feed demo` with its own embedded Redis in a temporary folder, lets the demo's morning
begin, then photographs the door screen at desktop and phone sizes, in French, Arabic and
English, and during an emergency.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from feed.bus import Bus
from feed.embedded import discover, free_port
from publisher import Publisher, tokens
from tests.conftest import feed_command, get

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = [
    ("door-fr-desktop.png", "/screen/room/atlas", "fr", 1920, 1080),
    ("door-ar-desktop.png", "/screen/room/atlas", "ar", 1920, 1080),
    ("door-en-phone.png", "/screen/room/anfa", "en", 390, 844),
    ("hall-fr-desktop.png", "/screen/hall", "fr", 1920, 1080),
    ("hall-ar-desktop.png", "/screen/hall", "ar", 1920, 1080),
    ("phone-fr.png", "/", "fr", 390, 844),
    ("phone-ar.png", "/", "ar", 390, 844),
]


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        env = {**os.environ, "FEED_DEMO_RATE": "400"}
        server = await asyncio.create_subprocess_exec(
            *feed_command("demo", "--port", str(port)), cwd=folder, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while await asyncio.to_thread(get_status, url + "/api/schedule") != 200:
                if time.monotonic() > deadline:
                    sys.exit("the demo did not start")
                await asyncio.sleep(0.2)
            await asyncio.sleep(6)  # the demo's clock reaches the opening of the first day
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
                for name, path, lang, width, height in SHOTS:
                    page = await browser.new_page(viewport={"width": width, "height": height})
                    await page.goto(f"{url}{path}?lang={lang}")
                    await page.wait_for_timeout(1500)
                    await page.screenshot(path=OUT / name)
                redis_url = discover(Path(folder) / "var")
                assert redis_url is not None
                async with Publisher(redis_url) as pub:
                    made = await pub.announce(
                        {"fr": "Exercice d'évacuation : suivez le personnel vers la sortie est.",
                         "ar": "تمرين إخلاء: اتبعوا الطاقم نحو المخرج الشرقي.",
                         "en": "Evacuation drill: follow the staff to the east exit."},
                        priority="emergency",
                    )  # fmt: skip
                    page = await browser.new_page(viewport={"width": 1920, "height": 1080})
                    await page.goto(f"{url}/screen/room/atlas?lang=fr")
                    await page.wait_for_timeout(1500)
                    await page.screenshot(path=OUT / "door-emergency-fr.png")
                    await pub.retract(made["id"])
                await console_shots(browser, url, redis_url)
                await browser.close()
        finally:
            server.terminate()
            await asyncio.wait_for(server.wait(), 10)
    print(f"screenshots written to {OUT}")


async def console_shots(browser: Any, url: str, redis_url: str) -> None:
    """The console of a moderator while the venue's screens report and show an emergency."""
    # The venue's named screens and a few phones, for the console's "who is watching".
    for path in ("room/atlas?screen=door-atlas-1", "room/anfa?screen=door-anfa-1",
                 "hall?screen=hall-nord"):  # fmt: skip
        screen = await browser.new_page(viewport={"width": 960, "height": 540})
        await screen.goto(f"{url}/screen/{path}&lang=fr")
    for _ in range(3):
        await (await browser.new_page()).goto(f"{url}/?lang=fr")
    dark = await browser.new_page(viewport={"width": 960, "height": 540})
    await dark.goto(f"{url}/screen/room/oasis?screen=door-oasis-1&lang=fr")
    await dark.wait_for_timeout(6000)  # reported once, then it goes dark
    await dark.close()
    bus = Bus(redis_url)
    secret, _ = await tokens.create(bus, "moderator", [], "Régie")
    await bus.aclose()
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{url}/console?lang=fr")
    await page.fill("#token", secret)
    await page.click("#signin-button")
    async with Publisher(redis_url) as pub:
        await pub.announce(
            {"fr": "Exercice d'évacuation : suivez le personnel vers la sortie est.",
             "en": "Evacuation drill: follow the staff to the east exit."},
            priority="emergency",
        )  # fmt: skip
    await page.fill("textarea[name=fr]", "Le déjeuner est servi au Jardin.")
    await page.fill("textarea[name=ar]", "الغداء يقدم في الحديقة.")
    await page.fill("textarea[name=en]", "Lunch is served in the Garden.")
    await page.click("[data-room=anfa] button[data-status=plus5]")
    await page.wait_for_timeout(12_000)  # reports, receipts, and a dark screen
    await page.screenshot(path=OUT / "console-moderator-fr.png", full_page=True)


def get_status(url: str) -> int:
    try:
        return get(url)[0]
    except OSError:
        return 0


if __name__ == "__main__":
    asyncio.run(main())
