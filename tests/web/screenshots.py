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
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from playwright.async_api import async_playwright

from feed.bus import Bus
from feed.embedded import discover, free_port
from publisher import Publisher, tokens
from tests.conftest import feed_command, get

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DEMO = Path(__file__).resolve().parents[2] / "publisher" / "demo" / "smart-city-expo-2019.json"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = [
    ("door-fr-desktop.png", "/screen/room/atlas", "fr", 1920, 1080),
    ("door-ar-desktop.png", "/screen/room/atlas", "ar", 1920, 1080),
    ("door-en-phone.png", "/screen/room/anfa", "en", 390, 844),
    ("hall-fr-desktop.png", "/screen/hall", "fr", 1920, 1080),
    ("hall-ar-desktop.png", "/screen/hall", "ar", 1920, 1080),
]  # the phone's own shots come from tests/web/phone_program.py


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "FEED_DEMO_RATE": "400"}
        server, url = await start("demo", folder, env, ready="/api/schedule")
        try:
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
                await untouched_shot(browser)
                await browser.close()
        finally:
            server.terminate()
            await asyncio.wait_for(server.wait(), 10)
    print(f"screenshots written to {OUT}")


async def console_shots(browser: Any, url: str, redis_url: str) -> None:
    """The console of a moderator while the venue's screens report and show an emergency."""
    # The venue's screens (each with its screen token, in the address's fragment) and a few
    # phones, for the console's "who is watching".
    bus = Bus(redis_url)
    secret, _ = await tokens.create(bus, "moderator", [], "Régie")
    screens = {}
    for name, room in (("door-atlas-1", "atlas"), ("door-anfa-1", "anfa"), ("hall-nord", None),
                       ("door-oasis-1", "oasis")):  # fmt: skip
        screens[name], _ = await tokens.create(bus, "screen", [room] if room else [], name)
    await bus.aclose()
    for name, path in (("door-atlas-1", "room/atlas"), ("door-anfa-1", "room/anfa"),
                       ("hall-nord", "hall")):  # fmt: skip
        screen = await browser.new_page(viewport={"width": 960, "height": 540})
        await screen.goto(f"{url}/screen/{path}?lang=fr#token={screens[name]}")
    for _ in range(3):
        await (await browser.new_page()).goto(f"{url}/?lang=fr")
    dark = await browser.new_page(viewport={"width": 960, "height": 540})
    await dark.goto(f"{url}/screen/room/oasis?lang=fr#token={screens['door-oasis-1']}")
    await dark.wait_for_timeout(6000)  # reported once, then it goes dark
    await dark.close()
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


async def untouched_shot(browser: Any) -> None:
    """An Arabic door screen of a room no operator has touched: what it shows comes from the
    program, and says so. The demo's program, moved to today, on a plain server (the demo's own
    operators touch every room)."""
    doc = orjson.loads(DEMO.read_bytes())
    tz = ZoneInfo(doc["timezone"])
    first = datetime.fromisoformat(doc["talks"][0]["start"])
    # The first day's 10:00 becomes now: the morning's sessions are on, or about to be.
    shift = datetime.now(tz).replace(second=0, microsecond=0) - first.replace(hour=10, minute=0)
    for talk in doc["talks"]:
        for key in ("start", "end"):
            talk[key] = (datetime.fromisoformat(talk[key]) + shift).isoformat()
    with tempfile.TemporaryDirectory() as folder:
        program = Path(folder) / "today.json"
        program.write_bytes(orjson.dumps(doc))
        server, url = await start("serve", folder, dict(os.environ), ready="/healthz")
        try:
            imported = await asyncio.create_subprocess_exec(
                *feed_command("schedule", "import", str(program), "--title",
                              "Smart City Expo Casablanca"),
                cwd=folder, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            assert await imported.wait() == 0
            page = await browser.new_page(viewport={"width": 1920, "height": 1080})
            await page.goto(f"{url}/screen/room/atlas?lang=ar")
            await page.wait_for_timeout(2000)
            await page.screenshot(path=OUT / "door-ar-untouched.png")
        finally:
            server.terminate()
            await asyncio.wait_for(server.wait(), 10)


async def start(
    command: str, folder: str, env: dict[str, str], *, ready: str
) -> tuple[asyncio.subprocess.Process, str]:
    """`feed serve` or `feed demo` in `folder`, once `ready` answers 200; and its URL."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        *feed_command(command, "--port", str(port)), cwd=folder, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while await asyncio.to_thread(get_status, url + ready) != 200:
        if time.monotonic() > deadline:
            server.terminate()
            sys.exit(f"feed {command} did not start")
        await asyncio.sleep(0.2)
    return server, url


def get_status(url: str) -> int:
    try:
        return get(url)[0]
    except OSError:
        return 0


if __name__ == "__main__":
    asyncio.run(main())
