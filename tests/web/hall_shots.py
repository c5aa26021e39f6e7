"""Screenshots of the hall screen with a synthetic program, in Debian's Chromium.

    .venv/bin/python -m tests.web.hall_shots            # docs/screenshots/hall-25-rooms-*.png
    .venv/bin/python -m tests.web.hall_shots --all DIR  # 4, 25, 60 rooms x 3 screens x fr, ar

Starts a private Redis and `feed serve`, imports a program of N rooms with long French titles
and sessions on now and next, sets every room's status, posts a long announcement, then
photographs the hall's first page (and, with --all, every page, turning them with the page's
clock).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from feed.embedded import RedisProcess, free_port
from tests.conftest import FeedServer
from tests.web import synthetic

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENS = {"landscape": (1920, 1080), "4k": (3840, 2160), "portrait": (1080, 1920)}


async def shoot(
    browser: Any, url: str, *, size: tuple[int, int], lang: str, stem: Path, every_page: bool
) -> None:
    context = await browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = await context.new_page()
    await page.clock.install()
    await page.goto(f"{url}/screen/hall?lang={lang}")
    await page.wait_for_selector("body[data-online=true]")
    await page.wait_for_timeout(1500)
    await page.screenshot(path=f"{stem}.png")
    pages = await page.evaluate("document.querySelectorAll('#rooms .page').length")
    for n in range(2, pages + 1 if every_page else 0):
        for _ in range(16):  # a second at a time: the feed's pings still get their pongs
            if await page.evaluate(f"!document.querySelectorAll('#rooms .page')[{n - 1}].hidden"):
                break
            await page.clock.run_for(1000)
            await page.wait_for_timeout(30)
        await page.wait_for_timeout(700)  # past the fade
        await page.screenshot(path=f"{stem}-p{n}.png")
    await context.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--all", metavar="DIR", type=Path)
    args = parser.parse_args()
    counts = [4, 25, 60] if args.all else [25]
    with tempfile.TemporaryDirectory() as folder:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            for rooms in counts:
                redis = RedisProcess(Path(folder) / f"redis{rooms}", port=free_port())
                redis.start()
                env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
                server = FeedServer(free_port(), ["--redis-url", redis.url], Path(folder), env)
                try:
                    server.start()
                    await synthetic.prepare(redis.url, server.url, rooms)
                    if args.all:
                        args.all.mkdir(parents=True, exist_ok=True)
                        for name, size in SCREENS.items():
                            for lang in ("fr", "ar"):
                                stem = args.all / f"hall-{rooms}-{name}-{lang}"
                                await shoot(
                                    browser,
                                    server.url,
                                    size=size,
                                    lang=lang,
                                    stem=stem,
                                    every_page=True,
                                )
                    else:
                        for name in ("landscape", "portrait"):
                            stem = OUT / f"hall-25-rooms-{name}"
                            await shoot(
                                browser,
                                server.url,
                                size=SCREENS[name],
                                lang="fr",
                                stem=stem,
                                every_page=False,
                            )
                finally:
                    server.stop()
                    redis.kill()
            await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
