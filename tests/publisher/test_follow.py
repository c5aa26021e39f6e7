"""`feed schedule follow`: against a local HTTP server that changes the file, answers 304 and
500, hangs, and serves HTML. The program survives every fault; the state says what happened."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientSession, ClientTimeout, web

from feed import keys
from feed.embedded import RedisProcess
from publisher import Publisher
from publisher.follow import Follower
from tests.conftest import feed_command

EXPO = Path(__file__).resolve().parents[1] / "web" / "fixtures" / "expo.json"
HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass
class Source:
    """The conference tool's export, as a test makes it behave."""

    body: bytes
    mode: str = "ok"  # ok, error, hang, html
    etag: int = 1
    seen: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(dict(request.headers))
        if self.mode == "error":
            return web.Response(status=500, text="Internal Server Error")
        if self.mode == "hang":
            await asyncio.sleep(30)
        if self.mode == "html":
            return web.Response(body=HTML, content_type="text/html")
        tag = f'"v{self.etag}"'
        if request.headers.get("If-None-Match") == tag:
            return web.Response(status=304, headers={"ETag": tag})
        return web.Response(body=self.body, content_type="application/json", headers={"ETag": tag})

    def change(self, edit: dict[str, str]) -> None:
        doc = json.loads(self.body)
        first = doc["schedule"]["conference"]["days"][0]["rooms"]["Atlas"][0]
        first.update(edit)
        self.body, self.etag = json.dumps(doc).encode(), self.etag + 1


@pytest.fixture
async def source() -> AsyncIterator[tuple[Source, str]]:
    src = Source(EXPO.read_bytes())
    app = web.Application()
    app.router.add_get("/schedule/export/schedule.json", src.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield src, f"http://127.0.0.1:{port}/schedule/export/schedule.json"
    finally:
        await runner.cleanup()


async def state(pub: Publisher) -> dict[str, object]:
    raw = await pub.bus.remembered(keys.FOLLOW)
    assert raw is not None
    found: dict[str, object] = orjson.loads(raw)
    return found


async def test_the_follower_keeps_the_last_good_program_through_every_fault(
    redis: RedisProcess, source: tuple[Source, str], caplog: pytest.LogCaptureFixture
) -> None:
    src, url = source
    async with Publisher(redis.url) as pub, ClientSession(timeout=ClientTimeout(total=1)) as http:
        follower = Follower(pub, url, every=2, timeout=1)
        await follower.once(http)
        first = await state(pub)
        assert first["state"] == "ok" and first["failures"] == 0 and first["changes"] == 0
        etag = (await pub.bus.program())[1]
        assert etag == first["etag"]
        venue_seq = (await pub.bus.sync("venue")).seq

        await follower.once(http)  # unchanged: a conditional request, answered 304
        assert src.seen[-1]["If-None-Match"] == '"v1"'
        assert (await pub.bus.sync("venue")).seq == venue_seq

        for mode, error in [
            ("error", "answered 500 Internal Server Error"),
            ("hang", "did not answer within 1 s"),
            ("html", "served an HTML page, not a program"),
        ]:
            src.mode = mode
            caplog.clear()
            await follower.once(http)
            await follower.once(http)  # the same failure again is not logged again
            now = await state(pub)
            assert now["state"] == "failing" and error in str(now["error"]), now
            assert [r.getMessage() for r in caplog.records if error in r.getMessage()] != []
            assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1
            assert (await pub.bus.program())[1] == etag  # the last good program stays
        assert (await state(pub))["failures"] == 6

        src.mode = "ok"
        src.change({"title": "Ouverture officielle (nouvelle heure)"})
        await follower.once(http)
        back = await state(pub)
        assert back["state"] == "ok" and back["error"] is None and back["changes"] == 1
        assert (await pub.bus.program())[1] != etag
        assert (await pub.bus.sync("venue")).seq == venue_seq + 1  # only what changed
        assert any("answers again" in r.getMessage() for r in caplog.records)


async def test_two_followers_never_import_at_once(
    redis: RedisProcess, source: tuple[Source, str]
) -> None:
    _, url = source
    async with Publisher(redis.url) as pub, ClientSession() as http:
        assert await pub.bus.remember(keys.IMPORT_LOCK, b"1", 60, first=True)  # another import
        follower = Follower(pub, url, every=2)
        await follower.once(http)
        assert (await state(pub))["state"] == "busy"
        assert (await pub.bus.program())[0] is None
        await pub.bus.forget(keys.IMPORT_LOCK)
        await follower.once(http)  # the same version is fetched again: nothing was kept
        assert (await state(pub))["state"] == "ok"
        assert (await pub.bus.program())[0] is not None


async def test_follow_runs_until_sigterm(redis: RedisProcess, source: tuple[Source, str]) -> None:
    _, url = source
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    proc = await asyncio.create_subprocess_exec(
        *feed_command("schedule", "follow", url, "--every", "2", "--redis-url", redis.url),
        env=env | {"FEED_LOG_FORMAT": "text"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        assert "imported Smart City Expo Casablanca 2019 (Africa/Casablanca)" in line, line
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert out.decode().strip() == f"stopped following {url}: 0 failed fetches; last state ok"
    assert b"Traceback" not in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--every", "0"], "--every must be a positive number of seconds"),
        (["--every", "-2"], "--every must be a positive number of seconds"),
        (["--every", "soon"], "invalid float value: 'soon'"),
    ],
)
def test_follow_refuses_bad_arguments(redis: RedisProcess, args: list[str], expected: str) -> None:
    done = subprocess.run(
        feed_command(
            "schedule", "follow", "http://127.0.0.1:9/x.json", *args, "--redis-url", redis.url
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
