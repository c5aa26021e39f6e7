"""Pictures of the attendees' page for the README: `python -m tests.web.phone_shots` starts its
own `feed serve` (embedded Redis, in a temporary folder), imports the demo's program moved to
today (tests/web/phone_program.py), sets a few statuses and an announcement, and photographs `/`
at phone size: the program in French and in Arabic, and in English "my day" with a favourite
moved by its operator (the news at the top) and two favourites at the same time.
Writes docs/screenshots/phone-fr.png, phone-ar.png and phone-en-myday.png."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from tests.web import phone_program
from tests.web.phone_load import CHROMIUM, free_port

FEED = str(Path(sys.executable).with_name("feed"))
OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def publish(folder: str, env: dict[str, str], *args: str) -> None:
    subprocess.run([FEED, "publish", *args], cwd=folder, env=env, check=True, capture_output=True)


async def shoot(url: str, folder: str, env: dict[str, str]) -> None:
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        for lang in ("fr", "ar"):
            context = await browser.new_context(
                viewport={"width": 390, "height": 844}, device_scale_factor=2
            )
            page = await context.new_page()
            await page.goto(f"{url}/?lang={lang}")
            await page.wait_for_selector("body[data-online=true][data-ready=program]")
            await page.locator("#program [data-session=SCE002] .star").click()
            await page.wait_for_timeout(800)
            await page.screenshot(path=OUT / f"phone-{lang}.png")
            await context.close()
        context = await browser.new_context(
            viewport={"width": 390, "height": 844}, device_scale_factor=2
        )
        page = await context.new_page()
        await page.goto(f"{url}/?lang=en")
        await page.wait_for_selector("body[data-online=true][data-ready=program]")
        for sid in ("SCE014", "SCE015"):
            await page.locator(f"#program [data-session={sid}] .star").click()
        await page.click("#views [data-view=myday]")
        await asyncio.to_thread(
            publish, folder, env, "status", "atlas", "moved", "--session", "SCE014", "--to", "oasis"
        )
        await page.wait_for_selector("#alerts:not([hidden])")
        await page.evaluate("window.scrollTo(0, 0)")
        await page.wait_for_timeout(800)
        await page.screenshot(path=OUT / "phone-en-myday.png")
        await browser.close()


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        program = Path(folder) / "program.json"
        program.write_text(json.dumps(phone_program.today()))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
        with (Path(folder) / "serve.log").open("wb") as log:
            server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any page
                [FEED, "serve", "--port", str(port)], cwd=folder, env=env, stdout=log, stderr=log
            )
            try:
                await asyncio.sleep(3)
                subprocess.run(  # noqa: ASYNC221 - nothing else runs meanwhile
                    [FEED, "schedule", "import", str(program), "--title", "Smart City Expo"],
                    cwd=folder,
                    env=env,
                    check=True,
                )
                publish(folder, env, "status", "anfa", "delayed", "--delay", "10")
                publish(folder, env, "status", "zerktouni", "full")
                publish(
                    folder,
                    env,
                    "announce",
                    "Le déjeuner est servi dans le hall · Lunch is served in the hall",
                )
                await shoot(f"http://127.0.0.1:{port}", folder, env)
            finally:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
