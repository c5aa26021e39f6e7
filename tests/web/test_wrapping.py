"""Long words never break a page (issue 12 §4): a pasted 100-character URL, a 400-character word,
in French or Arabic, in an emergency, an announcement or a session's title, wraps inside its box
on the door screen, the hall, the phones' page and the console; the emergency shows its whole
text, never cut at either end, and the page is never pushed sideways.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from feed.bus import Bus
from feed.embedded import RedisProcess
from feed.models import MAX_TEXT
from publisher import Publisher, tokens
from tests.web import synthetic
from tests.web.test_pages import CHROMIUM, FLAGS, Servers, expect, playwright

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)

URL = "https://www.casablanca-expo.example/plan/evacuation?zone=hall-nord&route=sortie-est&lang=fr"
assert len(URL) >= 90  # a pasted link, unbreakable as a word
FIRE = {
    "fr": f"Alerte incendie : quittez le bâtiment maintenant. Itinéraire : {URL} — suivez le "
    "personnel vers la sortie est.",
    "en": f"Fire alarm: leave the building now. Route: {URL} — follow the staff to the east exit.",
    "ar": f"إنذار حريق: غادروا المبنى الآن. المسار: {URL}",
}
WORD_AR = "مخرج" * 100  # one 400-character word
WORD_FR = "Anticonstitutionnellement" * 16  # one 400-character word
TRACK = (
    "Intelligence artificielle, données ouvertes et services publics numériques pour les "
    "collectivités territoriales"
)

# Where the texts of `selector` lie: every line box of their text must be inside the viewport
# and inside the element's own box, and the page must not be wider than the viewport.
GEOMETRY = """
(selector) => {
  const eps = 1;
  const out = [];
  for (const el of document.querySelectorAll(selector)) {
    const box = el.getBoundingClientRect();
    const range = document.createRange();
    range.selectNodeContents(el);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0);
    if (!rects.length) out.push(`${selector}: nothing shown`);
    for (const r of rects) {
      if (r.left < -eps || r.right > innerWidth + eps) out.push(`${selector}: off the screen`);
      if (r.left < box.left - eps || r.right > box.right + eps) out.push(`${selector}: out of box`);
    }
  }
  const wide = document.documentElement.scrollWidth;
  if (wide > innerWidth + eps) out.push(`the page is ${wide} px wide on a ${innerWidth} px screen`);
  if (scrollX !== 0) out.push("the page was pushed sideways");
  return [...new Set(out)];
}
"""

# The emergency overlay: its whole text on the screen, or, when it cannot be (a phone, the
# longest text), scrollable from its first line to its last, nothing cut at either end.
EMERGENCY = """
() => {
  const eps = 1;
  const overlay = document.getElementById("emergency");
  const text = overlay.querySelector(".emergency-text");
  const range = document.createRange();
  range.selectNodeContents(text);
  const rects = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0);
  const box = overlay.getBoundingClientRect();
  const top = Math.min(...rects.map((r) => r.top));
  const bottom = Math.max(...rects.map((r) => r.bottom));
  return {
    lines: rects.length,
    fontSize: parseFloat(getComputedStyle(text).fontSize),
    sideways: rects.some((r) => r.left < -eps || r.right > innerWidth + eps),
    startCut: top < box.top - eps,
    fits: bottom <= box.bottom + eps,
    reachable: bottom - box.top <= overlay.scrollHeight + eps && overlay.scrollTop === 0,
    scrollable: ["auto", "scroll"].includes(getComputedStyle(overlay).overflowY),
    wider: document.documentElement.scrollWidth > innerWidth + eps,
  };
}
"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        await chromium.close()


async def open_page(browser: Any, url: str, width: int, height: int) -> Any:
    page = await browser.new_page(viewport={"width": width, "height": height})
    await page.goto(url)
    await expect(page.locator("body")).to_have_attribute("data-online", "true")
    return page


LONGEST = ("Évacuation générale. " * 200)[:MAX_TEXT]


@pytest.mark.parametrize(
    "case",
    [
        ("fr", FIRE, (1920, 1080)),
        ("ar", FIRE, (1920, 1080)),
        ("ar", {"ar": f"إنذار: {WORD_AR}"}, (1920, 1080)),
        ("fr", {"fr": f"Urgence : {WORD_FR}"}, (1920, 1080)),
        ("ar", {"ar": f"إنذار: {WORD_AR}"}, (390, 844)),
        ("fr", {"fr": LONGEST}, (1920, 1080)),
        ("fr", {"fr": LONGEST}, (1080, 1920)),
    ],
    ids=["url-fr", "url-ar", "word-ar", "word-fr", "word-ar-phone", "longest", "longest-portrait"],
)
async def test_the_emergency_shows_its_whole_text_on_door_and_hall(
    redis: RedisProcess,
    feed_server: Servers,
    browser: Any,
    case: tuple[str, dict[str, str], tuple[int, int]],
) -> None:
    lang, text, (width, height) = case
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(synthetic.program(2), source="schedule.json")
        await pub.announce(text, priority="emergency")
    for path in ("/screen/room/atlas", "/screen/hall"):
        page = await open_page(browser, f"{server.url}{path}?lang={lang}", width, height)
        await expect(page.locator("#emergency")).to_be_visible()
        shown = await page.evaluate(EMERGENCY)
        assert shown["lines"] > 0, f"{path}: the emergency is blank"
        assert not shown["sideways"] and not shown["wider"], f"{path}: pushed sideways"
        assert not shown["startCut"], f"{path}: the start of the text is cut"
        assert shown["fontSize"] >= 20
        if width >= 1080:
            assert shown["fits"], f"{path}: the text is longer than the screen: {shown}"
        else:
            assert shown["fits"] or (shown["scrollable"] and shown["reachable"]), shown
        await page.close()


async def test_long_words_wrap_on_every_page(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    doc = orjson.loads(synthetic.program(2))
    day = doc["schedule"]["conference"]["days"][0]["rooms"]
    day["Atlas"][0]["title"] = f"Atelier {WORD_FR}"  # the session on now
    day["Anfa"][0]["title"] = f"Session {URL}"
    day["Anfa"][0]["track"] = TRACK  # in the phones' track filter
    bus = Bus(redis.url)
    moderator, _ = await tokens.create(bus, "moderator", [], "Régie")
    await bus.aclose()
    async with Publisher(redis.url) as pub:
        await pub.import_program(orjson.dumps(doc), source="schedule.json")
        await pub.announce({"ar": f"تنبيه: {WORD_AR}", "fr": f"Attention : {WORD_FR}"})
        await pub.announce({"ar": f"الخريطة: {URL}", "fr": f"Le plan : {URL}"}, rooms=["atlas"])
    pages = {
        "door": ("/screen/room/atlas", 1920, 1080, "#announcements li, #now .title"),
        "hall": ("/screen/hall", 1920, 1080, "#announcements li, .card .title"),
        "phone": ("/", 390, 844, "#announcements li, .card .title"),
    }
    for lang in ("ar", "fr"):
        for name, (path, width, height, selector) in pages.items():
            page = await open_page(browser, f"{server.url}{path}?lang={lang}", width, height)
            await expect(page.locator("#announcements li").first).to_be_visible()
            await expect(page.locator(".title").first).to_be_visible()
            assert await page.evaluate(GEOMETRY, selector) == [], f"{name} in {lang}"
            await page.close()
    console = await browser.new_page(viewport={"width": 800, "height": 1000})
    await console.goto(f"{server.url}/console?lang=ar")
    await console.fill("#token", moderator)
    await console.click("#signin-button")
    await expect(console.locator("#current li")).to_have_count(2)
    await console.fill("textarea[name=fr]", f"Aperçu {WORD_FR}")
    await expect(console.locator("#preview li")).to_have_count(1)
    problems = await console.evaluate(GEOMETRY, "#current li, #preview li, .room h3")
    assert problems == [], "console"
