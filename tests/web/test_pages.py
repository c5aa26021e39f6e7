"""The pages in a real browser: Debian's Chromium driven by Playwright, against a real server."""

from __future__ import annotations

import re
import shutil
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from feed.bus import Bus
from feed.embedded import RedisProcess
from publisher import Publisher, tokens
from tests.conftest import FeedServer

playwright = pytest.importorskip("playwright.async_api")
expect = playwright.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
EXPO = Path(__file__).resolve().parent / "fixtures" / "expo.json"

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


async def door(browser: Any, server: FeedServer, room: str, lang: str = "en", **size: int) -> Any:
    viewport = {"width": size.get("width", 1920), "height": size.get("height", 1080)}
    page = await browser.new_page(viewport=viewport)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await page.goto(f"{server.url}/screen/room/{room}?lang={lang}")
    await expect(page.locator("body")).to_have_attribute("data-online", "true")
    return page


async def test_a_status_reaches_the_door_screen_within_a_second(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
        page = await door(browser, server, "atlas", "fr")
        # Online comes with the server's hello; the room's snapshot may follow a moment later.
        await expect(page.locator("#room")).to_have_text("Atlas")
        started = time.monotonic()
        await pub.status("atlas", "delayed", delay=10)
        await expect(page.locator("#status")).to_have_text("Retard de 10 min", timeout=1000)
        assert time.monotonic() - started < 1.0
        assert page.errors == []


async def test_announcements_are_text_never_html(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    page = await door(browser, server, "atlas")
    await page.evaluate("window.pwned = false")
    attack = '<img src=x onerror="window.pwned = true"><script>window.pwned = true</script>'
    async with Publisher(redis.url) as pub:
        await pub.announce(attack, rooms=["atlas"], priority="important")
    item = page.locator("#announcements li")
    await item.wait_for()
    assert attack in (await item.text_content() or "")
    assert await page.locator("#announcements img, #announcements script").count() == 0
    await page.wait_for_timeout(300)
    assert await page.evaluate("window.pwned") is False
    csp = (await page.request.get(server.url + "/screen/room/atlas")).headers[
        "content-security-policy"
    ]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


async def test_offline_keeps_the_state_and_recovers_every_missed_change(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.status("atlas", "live")
        page = await door(browser, server, "atlas")
        await expect(page.locator("#status")).to_have_text("Live")
        server.stop()
        await expect(page.locator("body")).to_have_attribute("data-online", "false")
        assert "Offline since" in (await page.text_content("#connection") or "")
        assert await page.text_content("#status") == "Live"  # never blank
        await pub.status("atlas", "full")  # missed while the server is away
        await pub.announce("Salle pleine", rooms=["atlas"])
        server.start()
        await expect(page.locator("body")).to_have_attribute("data-online", "true", timeout=15_000)
        await expect(page.locator("#status")).to_have_text("Room full")
        assert await page.locator("#announcements li").text_content() == "Salle pleine"


async def test_arabic_lays_the_page_out_right_to_left(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
        await pub.status("anfa", "live")
        await pub.announce({"fr": "Bienvenue", "ar": "مرحبا بكم", "en": "Welcome"})
    page = await door(browser, server, "anfa", "ar")
    assert await page.evaluate("document.documentElement.dir") == "rtl"
    assert await page.evaluate("document.documentElement.lang") == "ar"
    await expect(page.locator("#status")).to_have_text("مباشر")
    await page.locator("#announcements li").wait_for()
    assert await page.text_content("#announcements li") == "مرحبا بكم"
    await page.click("nav button[lang=en]")  # switchable, and remembered
    assert await page.evaluate("document.documentElement.dir") == "ltr"
    assert await page.text_content("#announcements li") == "Welcome"


async def test_an_emergency_takes_over_the_screen_until_it_is_retracted(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    page = await door(browser, server, "atlas", "fr")
    overlay = page.locator("#emergency")
    assert await overlay.is_hidden()
    async with Publisher(redis.url) as pub:
        made = await pub.announce(
            {"fr": "Évacuez par les sorties est", "en": "Leave by the east exits"},
            priority="emergency",
        )
        await overlay.wait_for(state="visible", timeout=2000)
        assert await page.text_content(".emergency-text") == "Évacuez par les sorties est"
        assert await overlay.get_attribute("aria-live") == "assertive"
        await pub.retract(made["id"])
        await overlay.wait_for(state="hidden", timeout=2000)


async def test_the_hall_shows_every_room_and_their_changes(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
        page = await browser.new_page(viewport={"width": 1920, "height": 1080})
        await page.goto(f"{server.url}/screen/hall?lang=en")
        await expect(page.locator("body")).to_have_attribute("data-online", "true")
        await expect(page.locator("#conference")).to_have_text("Smart City Expo Casablanca 2019")
        await expect(page.locator("article.card")).to_have_count(2)
        await pub.status("anfa", "full")
        await expect(page.locator("[data-room=anfa] .badge")).to_have_text("Room full")
        await pub.announce("Café au Jardin")
        await expect(page.locator("#announcements li")).to_have_text("Café au Jardin")


async def test_the_console_buttons_change_what_the_screens_show(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    operator, _ = await tokens.create(bus, "operator", ["atlas"], "Atlas door")
    moderator, _ = await tokens.create(bus, "moderator", [], "Régie")
    await bus.aclose()
    async with Publisher(redis.url) as pub:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
    screen = await door(browser, server, "atlas", "en")
    console = await browser.new_page(viewport={"width": 900, "height": 1000})
    await console.goto(f"{server.url}/console?lang=en")
    await console.fill("#token", operator)
    await console.click("#signin-button")
    room = console.locator("[data-room=atlas]")
    await expect(console.locator("[data-room]")).to_have_count(1)  # only the operator's room
    await expect(console.locator("#announce-panel")).to_be_hidden()
    await room.locator("button[data-status=plus10]").click()
    await expect(room.locator(".result")).to_have_text(re.compile(r"On the screens \(#\d+\)"))
    await expect(screen.locator("#status")).to_have_text("Running late by 10 min")
    await room.locator("button[data-status=full]").click()
    await expect(screen.locator("#status")).to_have_text("Room full")

    await console.click("#who button")  # sign out, then in as the moderator
    await console.fill("#token", moderator)
    await console.click("#signin-button")
    await console.fill("textarea[name=fr]", "Bienvenue")
    await console.fill("textarea[name=en]", "Welcome <b>all</b>")
    await expect(console.locator("#preview li")).to_have_count(2)
    await console.click("#announce button[type=submit]")
    await expect(console.locator("#announce-result")).to_have_text("On the screens")
    await expect(screen.locator("#announcements li")).to_have_text("Welcome <b>all</b>")
    await console.locator("#current li button").click()
    await expect(screen.locator("#announcements li")).to_have_count(0)


async def test_the_phone_page_filters_keeps_favourites_and_works_offline(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
        await pub.status("anfa", "delayed", delay=10)
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    await page.goto(f"{server.url}/?lang=en")
    await expect(page.locator("body")).to_have_attribute("data-online", "true")
    await expect(page.locator("#conference")).to_have_text("Smart City Expo Casablanca 2019")
    assert await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    manifest = await page.request.get(server.url + "/manifest.webmanifest")
    assert (await manifest.json())["start_url"] == "/"
    await expect(page.locator("#changes li").first).to_contain_text("Running late by 10 min")
    # The program is in 2019, so nothing is on now or next: every card is empty but present.
    await expect(page.locator("article.card")).to_have_count(2)
    await page.select_option("#track", "Mobilité")
    await expect(page.locator("#rooms .empty")).to_be_visible()
    await page.select_option("#track", "")

    # Offline: the page comes back from the service worker with the last state it saw.
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-online", "true")
    await context.set_offline(True)
    server.stop()
    await page.reload()
    await expect(page.locator("#conference")).to_have_text("Smart City Expo Casablanca 2019")
    await expect(page.locator("[data-room=anfa] .badge")).to_have_text("Running late by 10 min")
    await expect(page.locator("#connection")).to_contain_text("Offline since")
    await context.close()


async def test_a_silent_connection_is_noticed_and_a_mistyped_room_still_gets_emergencies(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
    page = await door(browser, server, "atlas")
    mistyped = await browser.new_page()
    await mistyped.goto(f"{server.url}/screen/room/Atlas%20Hall?lang=en")  # not a room id
    await expect(mistyped.locator("#room")).to_have_text("Unknown room")
    elsewhere = await browser.new_page()
    await elsewhere.goto(f"{server.url}/screen/room/nowhere?lang=en")  # not in the program
    await expect(elsewhere.locator("#room")).to_have_text("Unknown room")
    async with Publisher(redis.url) as pub:
        made = await pub.announce("Evacuate", priority="emergency")
        await expect(mistyped.locator(".emergency-text")).to_have_text("Evacuate")
        await expect(elsewhere.locator(".emergency-text")).to_have_text("Evacuate")
        await pub.retract(made["id"])
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)  # the server hangs: no close, no error, silence
    try:
        await expect(page.locator("body")).to_have_attribute("data-online", "false", timeout=25_000)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    await expect(page.locator("body")).to_have_attribute("data-online", "true", timeout=15_000)


async def test_named_screens_report_emergencies_on_display_to_the_console(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    moderator, _ = await tokens.create(bus, "moderator", [], "Régie")
    # Each screen registered with its screen token, carried in its address's fragment.
    door, _ = await tokens.create(bus, "screen", ["atlas"], "door-atlas-1")
    hall, _ = await tokens.create(bus, "screen", [], "hall-1")
    await bus.aclose()
    async with Publisher(redis.url) as pub:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
    screens = []
    for token, path in ((door, "room/atlas"), (hall, "hall")):
        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        sent: list[str] = []  # what the page asks the server for: never its token
        page.on("request", lambda r, sent=sent: sent.append(r.url + str(r.headers)))
        await page.goto(f"{server.url}/screen/{path}?lang=en#token={token}")
        await expect(page.locator("body")).to_have_attribute("data-online", "true")
        assert sent and not [line for line in sent if token in line]
        screens.append(page)
    # An anonymous page that calls itself a screen is a viewer: not listed, no receipt.
    impostor = await browser.new_page(viewport={"width": 1280, "height": 720})
    await impostor.goto(f"{server.url}/screen/room/atlas?lang=en&screen=door-atlas-1")
    phone = await browser.new_page()
    await phone.goto(f"{server.url}/?lang=en")
    console = await browser.new_page(viewport={"width": 900, "height": 1400})
    await console.goto(f"{server.url}/console?lang=en")
    await console.fill("#token", moderator)
    await console.click("#signin-button")
    # Who is watching: both screens listed online, viewers counted per room.
    await expect(console.locator("#screens li[data-online=true]")).to_have_count(2, timeout=15_000)
    await expect(console.locator("[data-room=atlas] .viewers")).to_have_text(
        "1 on phones · 3 screens", timeout=15_000
    )
    await expect(console.locator("#screens li")).to_have_count(2)
    await console.fill("textarea[name=en]", "Evacuate by the east doors")
    await console.select_option("select[name=priority]", "emergency")
    await console.click("#announce button[type=submit]")
    for page in (*screens, impostor):
        await expect(page.locator(".emergency-text")).to_have_text("Evacuate by the east doors")
    await expect(console.locator("#current .receipts")).to_have_text(
        "On 2 of 2 screens", timeout=15_000
    )
    await screens[1].close()  # the hall screen goes dark
    await expect(console.locator("#screens li[data-online=false]")).to_have_count(1, timeout=15_000)


async def test_pages_fall_back_to_server_sent_events_when_websockets_fail(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    async with Publisher(redis.url) as pub:
        await pub.import_program(EXPO.read_bytes(), source="expo.json")
        page = await browser.new_page()
        # A network where no websocket ever opens.
        await page.add_init_script("window.WebSocket = function () { throw new Error('no'); };")
        await page.goto(f"{server.url}/screen/room/atlas?lang=en")
        await expect(page.locator("body")).to_have_attribute("data-online", "true", timeout=15_000)
        await expect(page.locator("#room")).to_have_text("Atlas")
        await pub.status("atlas", "delayed", delay=10)
        await expect(page.locator("#status")).to_have_text("Running late by 10 min")
        # Cut off and back: it resumes from where it was, over SSE again.
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        try:
            await expect(page.locator("body")).to_have_attribute(
                "data-online", "false", timeout=25_000
            )
            await pub.status("atlas", "full")
        finally:
            server.proc.send_signal(signal.SIGCONT)
        await expect(page.locator("#status")).to_have_text("Room full", timeout=20_000)
        forced = await browser.new_page()
        await forced.goto(f"{server.url}/screen/room/atlas?lang=en&transport=sse")
        await expect(forced.locator("#status")).to_have_text("Room full")


async def test_an_imported_program_is_text_never_html(
    redis: RedisProcess, feed_server: Servers, browser: Any
) -> None:
    server = feed_server(redis.url)
    attack = '<img src=x onerror="window.pwned = true"><script>window.pwned = true</script>'
    doc = orjson.loads(EXPO.read_bytes())
    conference = doc["schedule"]["conference"]
    conference["rooms"][1]["name"] = f"Anfa {attack}"  # a room's name, on every screen
    day = conference["days"][0]["rooms"]
    day[f"Anfa {attack}"] = day.pop("Anfa")
    for talk in day[f"Anfa {attack}"]:
        talk["room"] = f"Anfa {attack}"
    async with Publisher(redis.url) as pub:
        await pub.import_program(orjson.dumps(doc), source="expo.json")
        pages = []
        for path in ("/screen/hall", "/"):
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.add_init_script("window.pwned = false")
            await page.goto(f"{server.url}{path}?lang=fr")
            await expect(page.locator("body")).to_have_attribute("data-online", "true")
            pages.append(page)
        await expect(pages[0].locator("body")).to_contain_text(f"Anfa {attack}")
        # A session retitled by a new import: the phones list what changed, with its title.
        day["Atlas"][0]["title"] = f"Ouverture {attack}"
        await pub.import_program(orjson.dumps(doc), source="expo.json")
    await expect(pages[1].locator("body")).to_contain_text(f"Ouverture {attack}")
    for page in pages:
        await page.wait_for_timeout(300)
        assert await page.locator("body img, body script:not([src])").count() == 0
        assert await page.evaluate("window.pwned") is False
