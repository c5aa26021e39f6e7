"""The hall screen shows every room, whole, as a person in front of it would see it.

For 4, 25 and 60 rooms with long French titles and a long announcement, at 1920x1080, 3840x2160
and 1080x1920, each room's name, status, now and next, and the announcement, must be fully
visible at some moment within a minute of opening the page (two for 60 rooms): inside the
viewport, inside every box that clips, not covered by anything (hit-testing its own pixels), not
ellipsised, at 20 px or more and at full opacity. The page's clock is Playwright's, so a minute
of the page takes a few seconds of the test.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from feed.embedded import RedisProcess
from publisher import Publisher
from tests.conftest import FeedServer
from tests.web import synthetic
from tests.web.test_pages import CHROMIUM, FLAGS, Servers, expect, playwright

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)

# Every text on the screen, whatever it is (names, statuses, times, clock, language buttons,
# page numbers, announcements): at least `minFont` px and at full opacity.
EVERY_TEXT = """
function everyText(minFont) {
  const small = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.textContent.trim()) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const rects = [...range.getClientRects()].filter((r) => r.width > 1 && r.height > 1);
    if (!rects.length) continue; // not rendered: hidden, or off the page on display
    const el = node.parentElement;
    if (el.closest(".visually-hidden")) continue; // for screen readers only
    let opacity = 1;
    for (let n = el; n; n = n.parentElement) opacity *= parseFloat(getComputedStyle(n).opacity);
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (size < minFont || opacity < 1) {
      small.push(`${node.textContent.trim()}: ${size}px, opacity ${opacity}`);
    }
  }
  return small;
}
"""

# Everything the hall shows that a reader needs, on the pages on display: key -> element.
# Returns, for each, null when it is fully visible now, else why not.
VISIBILITY = """
(minFont) => {
  EVERY_TEXT
  const eps = 1;
  const opaque = (el) => {
    for (let n = el; n && n.nodeType === 1; n = n.parentElement) {
      const cs = getComputedStyle(n);
      if (parseFloat(cs.opacity) < 1 || cs.visibility !== "visible") return false;
    }
    const m = getComputedStyle(el).color.match(/rgba?\\(([^)]*)\\)/);
    const parts = m ? m[1].split(/[\\s,\\/]+/).filter(Boolean) : [];
    return parts.length < 4 || parseFloat(parts[3]) >= 1;
  };
  const why = (el) => {
    if (!el.textContent.trim()) return "empty";
    const range = document.createRange();
    range.selectNodeContents(el);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0);
    if (!rects.length) return "not rendered";
    const cs = getComputedStyle(el);
    if (parseFloat(cs.fontSize) < minFont) return `font-size ${cs.fontSize}`;
    if (!opaque(el)) return "not at full opacity";
    for (let a = el; a && a !== document.body; a = a.parentElement) {
      const as = getComputedStyle(a);
      if (as.display !== "inline" && as.display !== "contents") {
        if (a.scrollWidth > a.clientWidth + eps && as.overflowX !== "visible") {
          return `cut (width) by ${a.tagName}.${a.className}`;
        }
        if (a.scrollHeight > a.clientHeight + eps && as.overflowY !== "visible") {
          return `cut (height) by ${a.tagName}.${a.className}`;
        }
      }
      if (as.textOverflow === "ellipsis" && as.overflowX !== "visible"
          && a.scrollWidth > a.clientWidth) return "ellipsised";
    }
    for (const r of rects) {
      if (r.left < -eps || r.top < -eps || r.right > innerWidth + eps
          || r.bottom > innerHeight + eps) return "outside the viewport";
      for (let a = el.parentElement; a; a = a.parentElement) {
        const as = getComputedStyle(a);
        if (as.overflowX === "visible" && as.overflowY === "visible") continue;
        const b = a.getBoundingClientRect();
        if (r.left < b.left - eps || r.right > b.right + eps || r.top < b.top - eps
            || r.bottom > b.bottom + eps) return `clipped by ${a.tagName}.${a.className}`;
      }
      const inset = Math.min(3, r.width / 3, r.height / 3);
      const points = [
        [r.left + inset, r.top + inset], [r.right - inset, r.top + inset],
        [r.left + inset, r.bottom - inset], [r.right - inset, r.bottom - inset],
        [(r.left + r.right) / 2, (r.top + r.bottom) / 2],
      ];
      for (const [x, y] of points) {
        const hit = document.elementFromPoint(x, y);
        if (!hit || !(el.contains(hit) || hit.contains(el))) {
          return `covered by ${hit ? `${hit.tagName}.${hit.className}` : "nothing"}`;
        }
      }
    }
    return null;
  };
  const targets = {};
  for (const card of document.querySelectorAll("#rooms .page:not([hidden]) .card")) {
    const room = card.dataset.room;
    targets[`${room} name`] = card.querySelector("h2 > bdi");
    targets[`${room} status`] = card.querySelector(".badge");
    for (const slot of ["now", "next"]) {
      const box = card.querySelector(`.slot.${slot}`);
      targets[`${room} ${slot}`] = box && box.querySelector(".title");
      targets[`${room} ${slot} label`] = box && box.querySelector(".label");
      targets[`${room} ${slot} time`] = box && box.querySelector(".when");
    }
  }
  for (const item of document.querySelectorAll("#announcements li:not([hidden])")) {
    targets[`announcement ${item.dataset.id}`] = item;
  }
  const result = {};
  for (const [key, el] of Object.entries(targets)) result[key] = el ? why(el) : "missing";
  const main = document.getElementById("rooms").getBoundingClientRect();
  const band = document.getElementById("band");
  const animating = document.getAnimations().length;
  const pager = (id) => {
    const node = document.getElementById(id);
    return node.hidden ? "" : node.textContent;
  };
  return {
    now: Date.now(),
    result,
    page: pager("page"),
    notePage: pager("announcement-page"),
    animating,
    small: animating ? [] : everyText(minFont), // between transitions
    bandBelowRooms: band.hidden || band.getBoundingClientRect().top >= main.bottom - eps,
  };
}
""".replace("EVERY_TEXT", EVERY_TEXT)

SCREENS = [(1920, 1080), (3840, 2160), (1080, 1920)]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        await chromium.close()


async def watch_hall(
    browser: Any,
    server: FeedServer,
    ids: list[str],
    *,
    size: tuple[int, int],
    within_s: int,
    lang: str = "fr",
    reduced_motion: str = "no-preference",
    announcements: int = 1,
) -> dict[str, Any]:
    """Open the hall and look at it every second of its clock until every text has been seen
    whole, or `within_s` seconds have passed; what was seen, when, and what was never seen."""
    context = await browser.new_context(
        viewport={"width": size[0], "height": size[1]}, reduced_motion=reduced_motion
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.clock.install()
    await page.goto(f"{server.url}/screen/hall?lang={lang}")
    opened = await page.evaluate("Date.now()")
    await expect(page.locator("body")).to_have_attribute("data-online", "true")
    await expect(page.locator("article.card")).to_have_count(len(ids))
    await expect(page.locator("#announcements li")).to_have_count(announcements)
    notes = await page.eval_on_selector_all(
        "#announcements li", "items => items.map(i => i.dataset.id)"
    )
    expected = {f"{room} {part}" for room in ids for part in ("name", "status", "now", "next")}
    expected |= {f"{room} {slot} {part}" for room in ids for slot in ("now", "next")
                 for part in ("label", "time")}  # fmt: skip
    expected |= {f"announcement {note}" for note in notes}
    seen: dict[str, int] = {}
    last_reason: dict[str, str] = {}
    pages: list[tuple[str, int]] = []  # the page number on display, from when
    note_pages: list[tuple[str, int]] = []  # the same for the announcements' band
    animated = False
    min_font = 20 if size[0] * size[1] <= 1920 * 1080 else 40
    small: list[str] = []
    fading = 0
    while True:
        look = await page.evaluate(VISIBILITY, min_font)
        elapsed = look["now"] - opened
        assert look["bandBelowRooms"], "the announcements' band lies over the rooms"
        animated = animated or look["animating"] > 0
        small += look["small"]
        if not pages or pages[-1][0] != look["page"]:
            pages.append((look["page"], elapsed))
        if not note_pages or note_pages[-1][0] != look["notePage"]:
            note_pages.append((look["notePage"], elapsed))
        for key, reason in look["result"].items():
            if reason is None:
                seen.setdefault(key, elapsed)
            else:
                last_reason[key] = reason
        if expected <= seen.keys() or elapsed > within_s * 1000:
            break
        if look["animating"] and fading < 50:
            # A page fading in: CSS animations run on real time, not on the page's clock, so
            # let the half second pass as a person would, then look again.
            fading += 1
            await asyncio.sleep(0.1)
            continue
        fading = 0
        await page.clock.run_for(1000)
        await asyncio.sleep(0.02)  # the feed's pings get their pongs, as in real time
    await context.close()
    return {
        "missing": {k: last_reason.get(k, "never on a page") for k in expected - seen.keys()},
        "seen": seen,
        "note_pages": note_pages,
        "pages": pages,
        "animated": animated,
        "small": sorted(set(small)),
        "errors": errors,
    }


def held(pages: list[tuple[str, int]]) -> list[int]:
    """How long each page stayed, for the pages seen go up and followed by another (the first
    went up before the first look)."""
    return [b[1] - a[1] for a, b in itertools.pairwise(pages[1:])]


@pytest.mark.parametrize("size", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", [(4, 60), (25, 60), (60, 120)], ids=lambda c: f"{c[0]}-rooms")
async def test_every_room_is_shown_whole(
    redis: RedisProcess,
    feed_server: Servers,
    browser: Any,
    case: tuple[int, int],
    size: tuple[int, int],
) -> None:
    rooms, within_s = case  # within a minute of opening, two for 60 rooms
    server = feed_server(redis.url)
    ids = await synthetic.prepare(redis.url, server.url, rooms)
    saw = await watch_hall(browser, server, ids, size=size, within_s=within_s)
    assert saw["errors"] == []
    assert saw["missing"] == {}, saw["pages"]
    assert saw["small"] == [], "texts under 20 px or faded"
    assert max(saw["seen"].values()) <= within_s * 1000
    numbers = [label for label, _ in saw["pages"]]
    if rooms > 4:
        # More rooms than one screen holds: numbered pages, each held long enough to read.
        assert all(re.fullmatch(r"\u2066\d+ / \d+\u2069", n) for n in numbers), numbers
        assert len(set(numbers)) > 1
        assert min(held(saw["pages"])) >= 10_000, saw["pages"]
        assert saw["animated"], "the pages turn with a short fade when motion is welcome"


async def test_the_arabic_hall_with_reduced_motion_shows_every_room_without_fades(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    ids = await synthetic.prepare(redis.url, server.url, 25)
    saw = await watch_hall(
        browser, server, ids, size=(1920, 1080), within_s=60, lang="ar", reduced_motion="reduce"
    )
    assert saw["missing"] == {}
    assert saw["small"] == []
    assert len({label for label, _ in saw["pages"]}) > 1
    assert not saw["animated"], "no fade or slide when the reader asked for less motion"


async def test_announcements_that_do_not_fit_take_turns_in_their_own_band(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    ids = await synthetic.prepare(redis.url, server.url, 4)
    async with Publisher(redis.url) as pub:
        for n in range(7):
            await pub.announce(
                f"{n + 1}. {synthetic.ANNOUNCEMENT}", priority="important" if n % 3 else "info"
            )
    for size in ((1920, 1080), (1080, 1920)):
        saw = await watch_hall(
            browser, server, ids, size=size, within_s=60, announcements=8, reduced_motion="reduce"
        )
        assert saw["missing"] == {}, (saw["pages"], saw["note_pages"])
        assert saw["small"] == []
        numbers = [label for label, _ in saw["note_pages"]]
        assert len(set(numbers)) > 1, "eight long announcements do not fit in one band"
        assert all(re.fullmatch(r"\u2066\d+ / \d+\u2069", n) for n in numbers), numbers
        # The first band page went up with the page, after the opening this counts from.
        assert saw["note_pages"][1][1] >= 10_000, saw["note_pages"]
        assert all(t >= 10_000 for t in held(saw["note_pages"])), saw["note_pages"]
