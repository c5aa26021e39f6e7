"""The page's reducer (web/static/feed-client.js) in Chromium, served by a real `feed serve`: the
same vectors as the server's reducer (tests/reducer_vectors.json), the same line between visible
and invisible text, and a bad event that reaches a door screen over a real websocket stops
nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from feed import models, reducer
from feed.bus import Bus, Published
from feed.embedded import RedisProcess
from feed.protocol import Position
from publisher import Publisher
from tests.conftest import FeedServer
from tests.feed.test_vectors import CASES, VECTORS, strictly_equal
from tests.web.test_pages import CHROMIUM, FLAGS, door

playwright = pytest.importorskip("playwright.async_api")
expect = playwright.expect

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)
Servers = Callable[..., FeedServer]

# Runs every case in the page, from the file's own text: the browser parses the JSON itself
# (5.0 becomes 5 there), and each state goes back as JSON text.
RUN_VECTORS = """async (text) => {
  const { apply, initialState } = await import("/static/feed-client.js");
  const results = [];
  for (const c of JSON.parse(text).cases) {
    let state = { ...initialState(c.channel), ...structuredClone(c.start || {}) };
    const states = [];
    for (const step of c.steps) {
      const before = JSON.stringify(state);
      const data = JSON.stringify(step.data);
      state = apply(state, step.kind, step.data, step.ts);
      if (JSON.stringify(step.data) !== data) throw new Error(`${c.name}: data changed`);
      states.push({ state: JSON.stringify(state), same: JSON.stringify(state) === before });
    }
    results.push({ initial: JSON.stringify(initialState(c.channel)), states });
  }
  return results;
}"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        await chromium.close()


async def blank_page(browser: Any, server: FeedServer) -> Any:
    """A page of the server's origin that runs nothing of its own."""
    page = await browser.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await page.goto(f"{server.url}/healthz")
    return page


async def test_the_page_reducer_agrees_with_the_server_on_every_vector(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    page = await blank_page(browser, server)
    results = await page.evaluate(RUN_VECTORS, VECTORS.read_text())
    assert len(results) == len(CASES)
    for case, result in zip(CASES, results, strict=True):
        strictly_equal(orjson.loads(result["initial"]), reducer.initial(case["channel"]))
        want = {**reducer.initial(case["channel"]), **case.get("start", {})}
        for i, (step, got) in enumerate(zip(case["steps"], result["states"], strict=True)):
            want = {**want, **step["expect"]}
            where = f"{case['name']}, step {i} ({step['kind']} {step.get('note', '')})"
            strictly_equal(orjson.loads(got["state"]), want, where)
            assert got["same"] == (not step["expect"]) or step["expect"], where
    assert page.errors == []


async def test_one_event_that_throws_leaves_the_state_and_the_next_applies(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    page = await blank_page(browser, server)
    outcome = await page.evaluate(
        """async () => {
          const { apply, initialState } = await import("/static/feed-client.js");
          const errors = [];
          const log = console.error;
          console.error = (...args) => errors.push(String(args.at(-1)));
          // A state no reducer ever made (from a damaged store): reading it throws.
          const broken = { get announcements() { throw new Error("damaged"); } };
          const kept = apply(broken, "status", { status: "live" }, 1) === broken;
          console.error = log;
          const next = apply(initialState("room:atlas"), "status", { status: "live" }, 2);
          return { kept, errors, next: next.status };
        }"""
    )
    assert outcome == {"kept": True, "errors": ["Error: damaged"], "next": "live"}


async def test_the_page_draws_the_line_between_visible_and_invisible_where_python_does(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    page = await blank_page(browser, server)
    found = await page.evaluate(
        """async () => {
          const { visible } = await import("/static/feed-client.js");
          const hidden = [];  // [first, last] code point ranges the page finds invisible
          const unicode = /[\\p{Cc}\\p{Cf}\\p{White_Space}\\p{Default_Ignorable_Code_Point}]/u;
          const missed = [];  // invisible by this browser's Unicode, yet visible for the page
          for (let code = 0; code <= 0x10ffff; code += 1) {
            const char = String.fromCodePoint(code);
            if (!visible(char)) {
              const last = hidden.at(-1);
              if (last && last[1] === code - 1) last[1] = code;
              else hidden.push([code, code]);
            } else if (unicode.test(char)) missed.push(code);
          }
          return { hidden, missed };
        }"""
    )
    assert found["missed"] == [], [hex(c) for c in found["missed"]]
    assert [tuple(r) for r in found["hidden"]] == list(models.INVISIBLE)


async def publish_raw(bus: Bus, channel: str, kind: str, data: Any) -> Published:
    """Publish as an older or foreign publisher would: straight into Redis, unchecked."""
    for _ in range(10):
        known = await bus.sync(channel)
        ts = int(time.time() * 1000)
        state = reducer.apply(known.state, kind, data, ts)
        done = await bus.publish(
            channel, Position(known.epoch, known.seq), kind=kind, data=data, ts=ts, state=state
        )
        if isinstance(done, Published):
            return done
    raise AssertionError(f"could not publish on {channel}")


async def test_bad_events_over_a_real_websocket_never_stop_a_door_screen(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "live")
        page = await door(browser, server, "atlas")
        await expect(page.locator("#status")).to_have_text("Live")
        # What the issue measured: each of these stopped a channel, or showed something untrue.
        bad = [
            ("venue", "schedule", {"etag": "e1", "conference": None, "changes": {}}),
            ("room:atlas", "status", {"status": "bogus"}),
            ("room:atlas", "status", {"status": "delayed", "delay": -10}),
            ("room:atlas", "announce", {"text": "no id", "priority": "info", "ts": 1}),
            ("venue", "announce", {"id": "u1", "text": "ultra", "priority": "ultra", "ts": 1}),
            ("venue", "announce", {"id": "z1", "text": "\u200b\u200d", "ts": 1}),
            ("room:atlas", "program", {"room": {"id": "atlas"}, "sessions": {}}),
            ("room:atlas", "retract", {"reason": "retracted"}),
        ]
        for channel, kind, data in bad:
            await publish_raw(pub.bus, channel, kind, data)
        for announced in ("Salle pleine à 10 h", "Bienvenue"):
            rooms = ["atlas"] if announced.startswith("Salle") else []
            await pub.announce(announced, rooms=rooms)
        items = page.locator("#announcements li")
        await expect(items).to_have_count(2)
        assert sorted(await items.all_text_contents()) == ["Bienvenue", "Salle pleine à 10 h"]
        await expect(page.locator("#status")).to_have_text("Live")  # not "bogus", not -10
        await pub.status("atlas", "full")
        await expect(page.locator("#status")).to_have_text("Room full")
    assert page.errors == []
