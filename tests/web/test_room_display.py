"""What a room shows and how the pages word it, in Chromium (issue 12 §4 and §5).

The page's rule (`shown` in web/static/feed-client.js) is run on the cases feed/situation.py is
tested on; the minute counts are read as the pages word them; then real pages against a real
server: an untouched room, a status whose session ends while the screen watches, the console in
Arabic.
"""

from __future__ import annotations

import json
import mimetypes
import re
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from feed.bus import Bus
from feed.embedded import RedisProcess
from publisher import Publisher, tokens
from tests.conftest import FeedServer, connect

playwright = pytest.importorskip("playwright.async_api")
expect = playwright.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
HERE = Path(__file__).resolve().parent
STATIC = HERE.parents[1] / "web" / "static"
EXPO = HERE / "fixtures" / "expo.json"
CASES = json.loads((HERE.parent / "feed" / "situation-cases.json").read_text(encoding="utf-8"))
ORIGIN = "http://pages.test"  # served from web/static by the page's own router: no server

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)
Servers = Callable[..., FeedServer]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        await chromium.close()


async def modules_page(browser: Any) -> Any:
    """A blank page whose origin serves web/static, to import the pages' modules as they are."""
    page = await browser.new_page()

    async def serve(route: Any) -> None:
        path = route.request.url.removeprefix(ORIGIN).split("?")[0]
        if path.startswith("/static/") and (STATIC / path[8:]).is_file():
            kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
            await route.fulfill(body=(STATIC / path[8:]).read_bytes(), content_type=kind)
        else:
            await route.fulfill(
                body="<!doctype html><title>modules</title>", content_type="text/html"
            )

    await page.route(f"{ORIGIN}/**", serve)
    await page.goto(f"{ORIGIN}/")
    return page


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


async def test_the_page_gives_every_case_the_outcome_the_server_gives(browser: Any) -> None:
    page = await modules_page(browser)
    cases = [
        {
            "name": c["name"],
            "state": {
                **c["state"],
                "announcements": [],
                "sessions": CASES["sessions"][c["sessions"]],
            },
            "now": ms(c["now"]),
        }
        for c in CASES["cases"]
    ]
    got = await page.evaluate(
        """async (cases) => {
          const { shown } = await import("/static/feed-client.js");
          return cases.map((c) => shown(c.state, c.now));
        }""",
        cases,
    )
    wrong = [
        (c["name"], g, c["expect"])
        for c, g in zip(CASES["cases"], got, strict=True)
        if g != c["expect"]
    ]
    assert wrong == []


# (n, "N minutes left", "in N minutes") as the pages word them, n = 0, 1, 2, 3, 10, 11, 100.
MINUTES = {
    "ar": [
        (0, "لم تبق أي دقيقة", "الآن", "متأخرة"),
        (1, "تبقى دقيقة واحدة", "خلال دقيقة واحدة", "تأخير دقيقة واحدة"),
        (2, "تبقى دقيقتان", "خلال دقيقتين", "تأخير دقيقتين"),
        (3, "تبقى 3 دقائق", "خلال 3 دقائق", "تأخير 3 دقائق"),
        (10, "تبقى 10 دقائق", "خلال 10 دقائق", "تأخير 10 دقائق"),
        (11, "تبقى 11 دقيقة", "خلال 11 دقيقة", "تأخير 11 دقيقة"),
        (100, "تبقى 100 دقيقة", "خلال 100 دقيقة", "تأخير 100 دقيقة"),
    ],
    "fr": [
        (0, "encore 0 minute", "maintenant", "Retard de 0 min"),
        (1, "encore 1 minute", "dans 1 minute", "Retard de 1 min"),
        (2, "encore 2 minutes", "dans 2 minutes", "Retard de 2 min"),
        (11, "encore 11 minutes", "dans 11 minutes", "Retard de 11 min"),
    ],
    "en": [
        (0, "0 minutes left", "now", "Running late by 0 min"),
        (1, "1 minute left", "in 1 minute", "Running late by 1 min"),
        (2, "2 minutes left", "in 2 minutes", "Running late by 2 min"),
        (100, "100 minutes left", "in 100 minutes", "Running late by 100 min"),
    ],
}


@pytest.mark.parametrize("lang", sorted(MINUTES))
async def test_minute_counts_follow_the_language_s_plural_rules(browser: Any, lang: str) -> None:
    page = await modules_page(browser)
    counts = [n for n, *_ in MINUTES[lang]]
    got = await page.evaluate(
        """async ([lang, counts]) => {
          const { t } = await import("/static/i18n.js");
          return counts.map((n) => [n, t(lang, "left_min", { n }), t(lang, "in_min", { n }),
            t(lang, "status_delayed", { n })]);
        }""",
        [lang, counts],
    )
    assert [tuple(row) for row in got] == MINUTES[lang]


def program_around(
    now: datetime, atlas: list[tuple[float, int]], anfa: list[tuple[float, int]]
) -> bytes:
    """The expo's program with each room's first sessions moved to (start, minutes long), start in
    minutes from `now`; the other sessions stay in 2019."""
    doc = orjson.loads(EXPO.read_bytes())
    rooms = doc["schedule"]["conference"]["days"][0]["rooms"]
    for name, slots in (("Atlas", atlas), ("Anfa", anfa)):
        for talk, (start, minutes) in zip(rooms[name], slots, strict=False):
            talk["date"] = (now + timedelta(minutes=start)).isoformat()
            talk["duration"] = f"{minutes // 60:02d}:{minutes % 60:02d}"
    return orjson.dumps(doc)


async def server_shown(server: FeedServer, room: str) -> dict[str, Any]:
    async with connect(server.ws_url) as client:
        got = await client.subscribe([f"room:{room}"])
    snapshot = next(m for m in got if m["type"] == "snapshot")
    shown: dict[str, Any] = snapshot["state"]["shown"]
    return shown


async def door(browser: Any, server: FeedServer, room: str, lang: str) -> Any:
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await page.goto(f"{server.url}/screen/room/{room}?lang={lang}")
    await expect(page.locator("body")).to_have_attribute("data-online", "true")
    return page


async def test_an_untouched_room_shows_the_program_marked_as_such_never_an_empty_pill(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    now = datetime.now(UTC).replace(microsecond=0)
    async with Publisher(redis.url) as pub:
        # Atlas: a session on with 25 minutes left. Anfa: nothing on, one later.
        await pub.import_program(
            program_around(now, atlas=[(-35, 60)], anfa=[(50, 30)]), source="expo.json"
        )
        page = await door(browser, server, "atlas", "en")
        badge = page.locator("#status")
        await expect(badge).to_have_text("Schedule · On now")
        await expect(badge).to_have_attribute("data-source", "program")
        await expect(badge.locator(".source")).to_have_text("Schedule")  # the label, visible
        assert await badge.is_visible()
        await expect(page.locator("#now .when")).to_contain_text(re.compile(r"2[45] minutes left"))
        # The very contradiction of the issue: an operator's "upcoming" beside a session on now.
        await pub.status("atlas", "upcoming")
        await expect(badge).to_have_attribute("data-status", "on")
        await expect(badge).to_have_text("Schedule · On now")
        await pub.status("atlas", "live")  # a status about the room holds
        await expect(badge).to_have_text("Live")
        await expect(badge).to_have_attribute("data-source", "operator")
        assert await badge.locator(".source").count() == 0
        # Ended early: beside "Ended", the session's line no longer counts minutes down.
        await pub.status("atlas", "ended", session="7f6b1c0e-0000-4000-8000-000000000001")
        await expect(badge).to_have_text("Ended")
        await expect(page.locator("#now .when")).to_contain_text("· Ended")
        await expect(page.locator("#now .when")).not_to_contain_text("left")

    # Anfa, in Arabic: the next session's time, or over for today late in the evening; the
    # page and the server's snapshot agree on which.
    anfa = await door(browser, server, "anfa", "ar")
    served = await server_shown(server, "anfa")
    assert served["source"] == "program" and served["status"] in ("next", "over")
    badge = anfa.locator("#status")
    await expect(badge).to_have_attribute("data-status", served["status"])
    assert await badge.locator(".source").text_content() == "حسب البرنامج"
    words = {"next": "التالية على الساعة", "over": "انتهى برنامج اليوم"}[served["status"]]
    await expect(badge.locator(".text")).to_contain_text(words)
    assert page.errors == [] and anfa.errors == []


async def test_a_status_stops_holding_when_its_session_ends_and_the_next_inherits_nothing(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    operator, _ = await tokens.create(bus, "operator", ["atlas"], "Atlas door")
    await bus.aclose()
    now = datetime.now(UTC).replace(microsecond=0)
    async with Publisher(redis.url) as pub:
        await pub.import_program(
            program_around(now, atlas=[(-30, 60), (30, 30)], anfa=[]), source="expo.json"
        )
        screen = await door(browser, server, "atlas", "fr")
        console = await browser.new_page(viewport={"width": 900, "height": 1000})
        await console.goto(f"{server.url}/console?lang=fr")
        await console.fill("#token", operator)
        await console.click("#signin-button")
        room = console.locator("[data-room=atlas]")
        await expect(room).to_be_visible()
        # A new version of the program: the session on now ends in 12 seconds, the next begins.
        ends = datetime.now(UTC) + timedelta(seconds=12)
        await pub.import_program(
            program_around(ends, atlas=[(-60, 60), (0, 30)], anfa=[]), source="expo.json"
        )
        await expect(screen.locator("#now .when")).to_contain_text("encore 1 minute")
    # The operator says the room is full: the console names the session on now.
    await room.locator("button[data-status=full]").click()
    await expect(room.locator(".result")).to_have_text(re.compile(r"Sur les écrans"))
    badge = screen.locator("#status")
    await expect(badge).to_have_text("Salle complète")
    served = await server_shown(server, "atlas")
    assert served["source"] == "operator" and served["status"] == "full"
    assert served["session"] == "7f6b1c0e-0000-4000-8000-000000000001"
    # Once that session is over the next one is not full: the program speaks, on both pages.
    await expect(badge).to_have_text("Programme · En cours", timeout=20_000)
    await expect(room.locator(".badge")).to_have_text("Programme · En cours")
    title = screen.locator("#now .title")
    await expect(title).to_have_text("L'IA au service des citoyens")
    served = await server_shown(server, "atlas")
    assert served == {
        "source": "program",
        "status": "on",
        "session": "7f6b1c0e-0000-4000-8000-000000000002",
    }
    assert screen.errors == []


async def test_the_arabic_console_speaks_arabic_and_each_text_box_its_own_direction(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    moderator, _ = await tokens.create(bus, "moderator", [], "غرفة التحكم")
    await bus.aclose()
    async with Publisher(redis.url) as pub:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
    console = await browser.new_page(viewport={"width": 900, "height": 1200})
    await console.goto(f"{server.url}/console?lang=ar")
    help_text = console.locator("#signin-help")
    await expect(help_text).to_contain_text("تأتي الرموز من الجهة التي تشغل البث")
    await expect(help_text.locator("code[dir=ltr]")).to_have_text(
        "feed token create --role operator --room القاعة"
    )
    await console.fill("#token", "not-a-token")
    await console.click("#signin-button")
    await expect(console.locator("#signin-error")).to_have_text("هذا الرمز غير معروف أو ألغي")

    await console.fill("#token", moderator)
    await console.click("#signin-button")
    await expect(console.locator("#who")).to_contain_text("غرفة التحكم · مشرف")
    directions = await console.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("#announce textarea")]
          .map((box) => [box.name, getComputedStyle(box).direction]))"""
    )
    assert directions == {"fr": "ltr", "ar": "rtl", "en": "ltr"}
    # Every word the console writes itself is Arabic: what is left in Latin letters is names
    # (the token's, rooms', languages' own), code, or the README's own title for its section.
    await expect(console.locator("[data-room=atlas] .viewers")).to_contain_text("على الهواتف")
    latin = await console.evaluate(
        r"""() => {
          const skip = "bdi, code, nav#languages, #signin, script, style";
          const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
          const words = [];
          for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            if (node.parentElement.closest(skip) || !node.parentElement.checkVisibility()) continue;
            // A query parameter to type in an address (?screen=NAME) is code, not a word.
            const text = node.textContent.replace(/\?\w+=\S*/g, "");
            words.push(...(text.match(/[A-Za-z]{2,}/g) || []));
          }
          const options = [...document.querySelectorAll("option")].map((o) => o.textContent);
          return [...words, ...options.flatMap((t) => t.match(/[A-Za-z]{2,}/g) || [])];
        }"""
    )
    assert latin == []
    await console.click("nav button[lang=fr]")  # and in French, the same roles in French
    await expect(console.locator("#who")).to_contain_text("· modérateur")
