"""No WCAG 2.1 A or AA violation that axe-core finds (issue 17 §4), on the door screen, the hall,
the phone page and the console, in French, Arabic and English, each with live content: the
program on now, a status, announcements, and on the phone a favourite, "my day" and an opened
session. axe-core comes from npm, pinned in .ci/package.json (`npm ci --prefix .ci`), and is
injected into the real pages by Playwright."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from feed.bus import Bus
from feed.embedded import RedisProcess
from publisher import Publisher, tokens
from tests.conftest import FeedServer
from tests.web import phone_program
from tests.web.test_pages import CHROMIUM, browser  # noqa: F401 - the fixture

playwright = pytest.importorskip("playwright.async_api")
expect = playwright.expect

AXE = Path(__file__).resolve().parents[2] / ".ci" / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(
        not AXE.exists(), reason="axe-core is not installed: npm ci --prefix .ci (.ci/package.json)"
    ),
]
Servers = Callable[..., FeedServer]

# What axe found, one line per node: rule, impact, where, and axe's own summary of the fault.
RUN = """async (tags) => {
  const result = await axe.run(document, { runOnly: { type: "tag", values: tags },
    resultTypes: ["violations"] });
  return result.violations.flatMap((v) => v.nodes.map((n) =>
    `${v.id} (${v.impact}) at ${n.target.join(" ")}: ${n.failureSummary.replace(/\\s+/g, " ")}`));
}"""


async def violations(page: Any) -> list[str]:
    await page.add_script_tag(path=str(AXE))
    found: list[str] = await page.evaluate(RUN, TAGS)
    return found


@pytest.mark.parametrize("lang", ["fr", "ar", "en"])
async def test_no_wcag_violation_on_any_page(
    redis: RedisProcess,
    feed_server: Servers,
    browser: Any,  # noqa: F811
    lang: str,
) -> None:
    server = feed_server(redis.url)
    bus = Bus(redis.url)
    moderator, _ = await tokens.create(bus, "moderator", [], "Régie")
    await bus.aclose()
    async with Publisher(redis.url) as pub:
        doc = phone_program.today()
        await pub.import_program(orjson.dumps(doc), source="today.json", title="Expo")
        await pub.status("anfa", "delayed", delay=10)
        await pub.status("atlas", "full", session=phone_program.OPENING)
        await pub.announce({"fr": "Bienvenue", "ar": "مرحبا بكم", "en": "Welcome"})
        await pub.announce(
            {"fr": "Salle pleine", "ar": "القاعة ممتلئة", "en": "Room full"},
            rooms=["atlas"],
            priority="important",
        )
    found: dict[str, list[str]] = {}
    # axe is injected as an inline script, which the pages' CSP rightly refuses: let it in.
    context = await browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    for name, path, size in [
        ("door", "/screen/room/atlas", (1920, 1080)),
        ("hall", "/screen/hall", (1920, 1080)),
        ("phone", "/", (390, 844)),
    ]:
        page = await context.new_page()
        await page.set_viewport_size({"width": size[0], "height": size[1]})
        await page.goto(f"{server.url}{path}?lang={lang}")
        await expect(page.locator("body")).to_have_attribute("data-online", "true")
        await page.wait_for_timeout(300)  # the first snapshots drawn
        if name == "phone":
            row = page.locator("#program .session").nth(1)
            await row.locator(".star").click()
            await row.locator("summary").click()
            found["phone, program"] = await violations(page)
            await page.click("#views [data-view=myday]")
            await page.fill("#search", "a")
        found[name] = await violations(page)
        await page.close()
    console = await context.new_page()
    await console.set_viewport_size({"width": 900, "height": 1000})
    await console.goto(f"{server.url}/console?lang={lang}")
    found["console, sign-in"] = await violations(console)
    await console.fill("#token", moderator)
    await console.click("#signin-button")
    await expect(console.locator("#current li")).to_have_count(2)
    await console.fill("textarea[name=fr]", "Aperçu")
    await expect(console.locator("#preview li")).to_have_count(1)
    found["console"] = await violations(console)
    # The check itself sees faults: a button with no name is one.
    await console.evaluate("document.body.append(document.createElement('button'))")
    assert any(v.startswith("button-name") for v in await violations(console))
    await context.close()
    assert {page: v for page, v in found.items() if v} == {}
