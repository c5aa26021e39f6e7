"""The phone's first load on a slow network (issue 17 §3): `python -m tests.web.phone_load
[--sessions 1000] [--runs 3]` starts its own `feed serve` (embedded Redis, in a temporary
folder), imports a program of that many sessions (tests/web/phone_program.py `large`), and opens
`/` in Chromium at phone size with Chrome's "Slow 3G" profile (CDP
Network.emulateNetworkConditions: 2 s round trips, 400 kbit/s each way), a cold cache each run.

It prints, per run: the bytes transferred (the encoded sizes of every HTTP answer, and the
websocket frames received until the page is live), the time to the first usable screen (the
search field and the first day's sessions listed: body[data-ready=program]), the time until
every room's status is live, and the time the same phone, now with no network at all, takes to
open the page again from its caches. Figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from tests.web import phone_program

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FEED = str(Path(sys.executable).with_name("feed"))
SLOW_3G = {  # Chrome DevTools' and Puppeteer's preset
    "offline": False,
    "latency": 2000,
    "downloadThroughput": 500 * 1000 / 8 * 0.8,
    "uploadThroughput": 500 * 1000 / 8 * 0.8,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def one_run(url: str, rooms: int) -> dict[str, Any]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        context = await browser.new_context(viewport={"width": 390, "height": 844})
        page = await context.new_page()
        cdp = await context.new_cdp_session(page)
        await cdp.send("Network.enable")
        await cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        await cdp.send("Network.emulateNetworkConditions", SLOW_3G)
        http: dict[str, int] = {}
        ws = {"bytes": 0, "frames": 0}
        urls: dict[str, str] = {}
        cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"],
               e["request"]["url"]))  # fmt: skip
        cdp.on(
            "Network.loadingFinished",
            lambda e: http.__setitem__(
                urls.get(e["requestId"], e["requestId"]), int(e["encodedDataLength"])
            ),
        )

        def frame(e: dict[str, Any]) -> None:
            ws["bytes"] += len(e["response"]["payloadData"].encode())
            ws["frames"] += 1

        cdp.on("Network.webSocketFrameReceived", frame)
        started = time.perf_counter()
        await page.goto(f"{url}/?lang=fr", wait_until="commit", timeout=120_000)
        await page.wait_for_selector("body[data-ready=program] #program .session", timeout=120_000)
        usable = time.perf_counter() - started
        # Live: online, and every room's state held (the snapshots have arrived).
        await page.wait_for_function(
            "(n) => document.body.dataset.online === 'true'"
            " && Object.keys(JSON.parse(localStorage.getItem('feed-phone') || '{}')).length >= n",
            arg=rooms + 1,
            timeout=180_000,
            polling=100,
        )
        live = time.perf_counter() - started
        await page.wait_for_timeout(600)  # the position saved: feed-client saves after 500 ms
        first = dict(http)  # the first load's answers only
        # The same phone later, with no network at all: everything from its caches.
        await cdp.send("Network.emulateNetworkConditions", {**SLOW_3G, "offline": True})
        started = time.perf_counter()
        await page.reload(wait_until="commit")
        await page.wait_for_selector("body[data-ready=program] #program .session")
        offline = time.perf_counter() - started
        await browser.close()
    by_kind = {
        "page and scripts": sum(v for k, v in first.items() if "/api/" not in k),
        "requests": len(first),
        "program (GET /api/schedule)": sum(v for k, v in first.items() if "/api/schedule" in k),
    }
    return {
        "usable_s": round(usable, 2),
        "live_s": round(live, 2),
        "offline_reopen_s": round(offline, 2),
        "http_bytes": by_kind,
        "ws_bytes": ws["bytes"],
        "ws_frames": ws["frames"],
        "total_bytes": sum(by_kind.values()) + ws["bytes"],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        program = Path(folder) / "program.json"
        program.write_text(json.dumps(phone_program.large(args.sessions, args.rooms)))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
        with (Path(folder) / "serve.log").open("wb") as log:
            server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any page
                [FEED, "serve", "--port", str(port)], cwd=folder, env=env, stdout=log, stderr=log
            )
            try:
                url = f"http://127.0.0.1:{port}"
                for _ in range(100):
                    try:
                        socket.create_connection(("127.0.0.1", port), 0.2).close()
                        break
                    except OSError:
                        await asyncio.sleep(0.2)
                subprocess.run(  # noqa: ASYNC221 - nothing else runs meanwhile
                    [FEED, "schedule", "import", str(program)], cwd=folder, env=env, check=True
                )
                print(f"{args.sessions} sessions, {args.rooms} rooms; Slow 3G: {SLOW_3G}")
                for run in range(args.runs):
                    print(json.dumps({"run": run + 1, **await one_run(url, args.rooms)}))
            finally:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
