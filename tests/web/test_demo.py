"""`feed demo`: the seed's conference, alive, through the real publishing path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.conftest import FeedServer, connect, feed_command, get

Servers = Callable[..., FeedServer]


async def test_the_demo_imports_its_program_and_plays_it(feed_server: Servers) -> None:
    server = feed_server(None, "--demo", env={"FEED_DEMO_RATE": "600"})
    deadline = time.monotonic() + 10
    while (answer := get(server.url + "/api/schedule"))[0] != 200:  # imported once it has started
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.05)
    program = answer[1]
    assert program["conference"]["title"] == "Smart City Expo Casablanca 2019"
    assert program["conference"]["timezone"] == "Africa/Casablanca"
    assert [r["id"] for r in program["rooms"]] == ["atlas", "anfa", "zerktouni", "oasis"]
    assert all({"fr", "ar", "en"} <= set(s["titles"]) for s in program["sessions"])
    async with connect(server.ws_url) as client:
        hello = client.seen[0]
        assert hello["clock_rate"] == 600
        got = await client.subscribe(["room:atlas", "venue"])
        atlas = next(m for m in got if m["type"] == "snapshot" and m["channel"] == "room:atlas")
        assert atlas["state"]["name"] == "Atlas" and atlas["state"]["sessions"]
        # At 600 times real time, the morning moves on quickly: statuses and announcements flow.
        events = await client.until(
            lambda m: (
                m["type"] == "event"
                and m["kind"] == "status"
                and m["data"]["status"] in ("live", "full")
            ),
            timeout=20,
        )
    kinds = {(e["channel"], e["kind"]) for e in events if e["type"] == "event"}
    assert ("venue", "announce") in kinds
    started = time.monotonic()
    assert server.stop() == 0  # the demo's loop stops with the server, promptly
    assert time.monotonic() - started < 5


async def test_feed_publish_against_a_demo_stamps_events_with_the_demos_clock(
    feed_server: Servers,
) -> None:
    """The demo's clock is the venue's time for everyone: an announcement sent from the command
    line while the demo plays is dated in the demo's 2019, so it is not expired on arrival."""
    server = feed_server(None, "--demo", env={"FEED_DEMO_RATE": "30"})
    deadline = time.monotonic() + 10
    while get(server.url + "/api/schedule")[0] != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    command = feed_command("publish", "announce", "Café offert au stand 12", "--expires", "30")
    done = await asyncio.create_subprocess_exec(
        *command, cwd=server.cwd, env=server.env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(done.communicate(), 20)
    assert done.returncode == 0
    announcement_id = out.decode().split()[1]
    async with connect(server.ws_url) as client:
        demo_now = client.seen[0]["server_time"]
        got = await client.subscribe(["venue"])
    (venue,) = [m for m in got if m["type"] == "snapshot"]
    (note,) = [a for a in venue["state"]["announcements"] if a["id"] == announcement_id]
    assert abs(note["ts"] - demo_now) < 10 * 60_000  # demo time, not today (seven years on)
    assert note["expires_at"] > demo_now
    assert server.stop() == 0
