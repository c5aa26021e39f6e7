"""A program follower whose source fails shows it to the staff: API, /metrics and console."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from feed.bus import Bus
from feed.embedded import RedisProcess, free_port
from publisher import tokens
from tests.conftest import FeedServer, feed_command
from tests.web.test_pages import CHROMIUM, FLAGS, expect, playwright

Servers = Callable[..., FeedServer]


def fetch(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed")
async def test_a_failing_source_shows_in_the_api_the_metrics_and_the_console(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    moderator, _ = await tokens.create(bus, "moderator", [], "desk")
    await bus.aclose()
    assert fetch(server.url + "/api/schedule/follow", moderator)[0] == 404  # none follows yet
    source = f"http://127.0.0.1:{free_port()}/schedule.json"  # nothing listens there
    follower = await asyncio.create_subprocess_exec(
        *feed_command("schedule", "follow", source, "--every", "2", "--zone", "Europe/Paris"),
        *("--redis-url", redis.url),
        env={k: v for k, v in os.environ.items() if not k.startswith("FEED_")},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            status, body = await asyncio.to_thread(
                fetch, server.url + "/api/schedule/follow", moderator
            )
            if status == 200 and '"failing"' in body:
                break
            assert time.monotonic() < deadline, (status, body)
            await asyncio.sleep(0.3)
        assert source in body
        assert fetch(server.url + "/api/schedule/follow")[0] == 401  # staff only
        _, metrics = await asyncio.to_thread(fetch, server.url + "/metrics")
        up = re.search(r'^feed_program_follow_up\{url="([^"]+)"\} (\S+)$', metrics, re.M)
        assert up is not None and up.group(1) == source and float(up.group(2)) == 0
        failures = re.search(r"^feed_program_follow_failures_total\{[^}]*\} (\S+)$", metrics, re.M)
        assert failures is not None and float(failures.group(1)) >= 1

        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                console: Any = await browser.new_page()
                await console.goto(f"{server.url}/console?lang=fr")
                await console.fill("#token", moderator)
                await console.click("#signin-button")
                line = console.locator("#source")
                await expect(line).to_be_visible(timeout=10_000)
                await expect(line).to_have_attribute("data-state", "failing")
                await expect(line).to_contain_text("La source du programme échoue")
            finally:
                await browser.close()
    finally:
        if follower.returncode is None:
            follower.send_signal(signal.SIGTERM)
            await asyncio.wait_for(follower.wait(), 15)
    assert follower.returncode == 0
