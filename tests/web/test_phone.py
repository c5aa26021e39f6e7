"""The attendee's phone (issue 17): the whole program, live, in Chromium at phone size.

In French, Arabic and English: browse the days, search across every day, favourite, see "my
day" with its clashes, go offline (the page opens from the phone's cache), an operator moves the
favourite meanwhile, come back online and see that change first. Then: a re-import is fetched
once because the feed says so (never polled) and its changes are marked until seen; the page
works with the keyboard and with text at 200 %; a favourite goes to the phone's calendar.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from feed.embedded import RedisProcess
from publisher import Publisher
from tests.conftest import FeedServer
from tests.web import phone_program
from tests.web.test_pages import CHROMIUM, browser  # noqa: F401 - the fixture

playwright = pytest.importorskip("playwright.async_api")
expect = playwright.expect

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)
Servers = Callable[..., FeedServer]
TITLE = "Smart City Expo Casablanca"
PHONE = {"width": 390, "height": 844}
FAVOURITE, CLASH = "SCE014", "SCE015"  # Atlas and Anfa, 14:30-15:15 on the first day
# The words each language uses, as the page must show them.
WORDS = {
    "fr": {"moved": "Déplacé en salle Anfa", "day": "Ma journée", "clash": "En même temps que",
           "offline": "Hors ligne", "every": "tous les jours", "seen": "Compris"},
    "ar": {"moved": "نقلت إلى قاعة أنفا", "day": "يومي", "clash": "في نفس وقت",
           "offline": "غير متصل", "every": "كل الأيام", "seen": "فهمت"},
    "en": {"moved": "Moved to Anfa", "day": "My day", "clash": "Same time as",
           "offline": "Offline", "every": "every day", "seen": "Got it"},
}  # fmt: skip


async def schedule(server: FeedServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/schedule") as answer:
        program: dict[str, Any] = await answer.json()
        return program


async def open_phone(context: Any, server: FeedServer, lang: str) -> Any:
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await page.goto(f"{server.url}/?lang={lang}")
    await expect(page.locator("body")).to_have_attribute("data-ready", "program")
    return page


def title_in(talk: dict[str, Any], lang: str) -> str:
    return str(talk["title"].get(lang) or talk["title"]["en"])


@pytest.mark.parametrize("lang", ["fr", "ar", "en"])
async def test_browse_search_favourite_offline_and_the_move_comes_first(
    redis: RedisProcess,
    feed_server: Servers,
    browser: Any,  # noqa: F811
    lang: str,
) -> None:
    doc = phone_program.today()
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(orjson.dumps(doc), source="today.json", title=TITLE)
    program = await schedule(server)
    starts = {s["id"]: s["start"] for s in program["sessions"]}
    days = sorted({s["start"][:10] for s in program["sessions"]})
    context = await browser.new_context(viewport=PHONE)
    page = await open_phone(context, server, lang)

    await browse_and_search(page, doc, starts, days, lang)
    await favourite_two_at_the_same_time(page, server, starts, lang)
    await offline_then_the_move_comes_first(
        context, page, server=server, redis=redis, doc=doc, lang=lang
    )
    assert page.errors == []
    await context.close()


async def browse_and_search(
    page: Any, doc: dict[str, Any], starts: dict[str, str], days: list[str], lang: str
) -> None:
    # First thing on the screen: the search field, then the program of a day, full titles.
    search = page.locator("input[type=search]#search")
    await expect(search).to_be_visible()
    assert (await search.bounding_box())["y"] < PHONE["height"] / 2
    await expect(page.locator("#days button")).to_have_count(len(days))
    assert page.errors == []

    # Browse: the favourite's day, its session with time, room, speakers, language, abstract.
    await page.click(f"#days [data-day='{starts[FAVOURITE][:10]}']")
    row = page.locator(f"#program [data-session={FAVOURITE}]")
    talk = next(t for t in doc["talks"] if t.get("code") == FAVOURITE)
    await expect(row.locator(".title")).to_have_text(title_in(talk, lang))
    await expect(row).to_contain_text("Atlas" if lang != "ar" else "أطلس")
    await row.locator("summary").click()
    abstract = talk["abstract"].get(lang) or talk["abstract"]["en"]
    await expect(row.locator(".abstract")).to_have_text(abstract)

    # Search across every day, whichever day is selected: another day's title, then a speaker.
    later = next(t for t in doc["talks"] if t.get("code") and starts[t["code"]][:10] != days[0])
    other_day = next(d for d in days if d != starts[later["code"]][:10])
    await page.click(f"#days [data-day='{other_day}']")
    await search.fill(title_in(later, lang))
    await expect(page.locator(f"#program [data-session={later['code']}]")).to_be_visible()
    await expect(page.locator("#count")).to_contain_text(WORDS[lang]["every"])
    await search.fill("")
    if lang == "fr":  # accents do not matter
        await search.fill("ceremonie d'ouverture")
        await expect(page.locator("#program [data-session=SCE001]")).to_be_visible()
        await search.fill("")


async def favourite_two_at_the_same_time(
    page: Any, server: FeedServer, starts: dict[str, str], lang: str
) -> None:
    # Favourites from anywhere: the favourite and one at the same time in another room.
    await page.click(f"#days [data-day='{starts[FAVOURITE][:10]}']")
    for sid in (FAVOURITE, CLASH):
        star = page.locator(f"#program [data-session={sid}] .star")
        await star.click()
        await expect(star).to_have_attribute("aria-pressed", "true")
    await page.click("#views [data-view=myday]")
    await expect(page.locator("#program .session")).to_have_count(2)
    await expect(page.locator(f"#program [data-session={FAVOURITE}] .clash")).to_contain_text(
        WORDS[lang]["clash"]
    )
    href = await page.locator("#calendar-link").get_attribute("href") or ""
    assert f"session={FAVOURITE}" in href and f"session={CLASH}" in href
    async with aiohttp.ClientSession() as http, http.get(server.url + href) as answer:
        assert answer.status == 200
        assert (await answer.text()).count("BEGIN:VEVENT") == 2


async def offline_then_the_move_comes_first(
    context: Any,
    page: Any,
    *,
    server: FeedServer,
    redis: RedisProcess,
    doc: dict[str, Any],
    lang: str,
) -> None:
    words = WORDS[lang]
    talk = next(t for t in doc["talks"] if t.get("code") == FAVOURITE)
    # Offline: the page opens from the phone's cache, program and favourites included.
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-online", "true")
    await context.set_offline(True)
    server.stop()
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "program")
    await expect(page.locator("#connection")).to_contain_text(words["offline"])
    await expect(page.locator(f"#program [data-session={FAVOURITE}] .star")).to_have_attribute(
        "aria-pressed", "true"
    )
    assert await page.locator("#alerts").is_hidden()

    # Meanwhile the operator moves the favourite to Anfa.
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "moved", session=FAVOURITE, moved_to="anfa")
    await page.wait_for_timeout(500)
    await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")

    # Back online: the change to the favourite is the first thing shown, and said.
    server.start()
    await context.set_offline(False)
    alerts = page.locator("#alerts")
    await expect(alerts).to_be_visible(timeout=15_000)
    await expect(alerts).to_contain_text(words["moved"])
    await expect(alerts).to_contain_text(title_in(talk, lang))
    first = await page.evaluate(
        "[...document.querySelectorAll('main > *')].find((n) => n.checkVisibility()).id"
    )
    assert first == "alerts"
    assert -2 <= (await alerts.bounding_box())["y"] < PHONE["height"]  # brought into view
    await expect(page.locator("#spoken")).to_contain_text(words["moved"])
    await expect(page.locator(f"#program [data-session={FAVOURITE}] .live")).to_contain_text(
        words["moved"]
    )
    await page.click("#alerts-seen")
    await expect(alerts).to_be_hidden()
    await page.reload()  # seen stays seen
    await expect(page.locator("body")).to_have_attribute("data-online", "true")
    await page.wait_for_timeout(500)
    assert await alerts.is_hidden()


async def test_a_new_program_is_fetched_once_when_the_feed_says_so_and_marked_until_seen(
    redis: RedisProcess,
    feed_server: Servers,
    browser: Any,  # noqa: F811
) -> None:
    doc = phone_program.today()
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(orjson.dumps(doc), source="today.json", title=TITLE)
        context = await browser.new_context(viewport=PHONE)
        page = await context.new_page()
        fetched: list[int] = []
        page.on(
            "response",
            lambda r: fetched.append(r.status) if r.url.endswith("/api/schedule") else None,
        )
        await page.goto(f"{server.url}/?lang=en")
        await expect(page.locator("body")).to_have_attribute("data-online", "true")
        await page.wait_for_timeout(3000)
        assert fetched == [200]  # once, then never polled
        await page.reload()  # the phone's copy is current: the feed's etag says so
        await expect(page.locator("body")).to_have_attribute("data-online", "true")
        await page.wait_for_timeout(1000)
        assert fetched == [200]

        # A re-import moves a session to Oasis: one fetch, the row moves, marked until seen.
        await pub.import_program(
            orjson.dumps(phone_program.moved(doc, FAVOURITE, 4)), source="today.json", title=TITLE
        )
        row = page.locator(f"#program [data-session={FAVOURITE}]")
        await page.click(
            f"#days [data-day='{(await schedule(server))['sessions'][0]['start'][:10]}']"
        )
        await expect(row.locator(".meta")).to_contain_text("Oasis")
        await expect(row.locator(".mark")).to_have_text("Moved · from Atlas")
        assert fetched == [200, 200]
        await row.locator("summary").click()  # opened: seen
        await expect(row.locator(".mark")).to_have_count(0)
        await page.reload()
        await expect(page.locator("body")).to_have_attribute("data-ready", "program")
        await page.wait_for_timeout(500)
        assert await row.locator(".mark").count() == 0
        await context.close()


async def test_the_keyboard_and_text_at_200_percent(
    redis: RedisProcess,
    feed_server: Servers,
    browser: Any,  # noqa: F811
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(
            orjson.dumps(phone_program.today()), source="today.json", title=TITLE
        )
    context = await browser.new_context(viewport=PHONE)
    page = await open_phone(context, server, "fr")
    # A phone's largest text setting: every size follows the root's.
    await page.evaluate("document.documentElement.style.fontSize = '200%'")
    assert await page.evaluate("getComputedStyle(document.body).fontSize") == "34px"
    wider = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
    assert wider <= 0, "the page scrolls sideways at 200 %"
    # The keyboard alone: into the search field, type, Tab to the first result's star, Space.
    await page.keyboard.press("Tab")
    for _ in range(10):
        if await page.evaluate("document.activeElement.id") == "search":
            break
        await page.keyboard.press("Tab")
    await page.keyboard.type("ceremonie")
    await expect(page.locator("#program .session")).to_have_count(1)
    for _ in range(30):
        if await page.evaluate("document.activeElement.classList.contains('star')"):
            break
        await page.keyboard.press("Tab")
    await page.keyboard.press("Space")
    await expect(page.locator("#program [data-session=SCE001] .star")).to_have_attribute(
        "aria-pressed", "true"
    )
    focused = await page.evaluate(
        "document.activeElement.closest('[data-session]').dataset.session"
    )
    assert focused == "SCE001"  # the star keeps the focus
    await context.close()
