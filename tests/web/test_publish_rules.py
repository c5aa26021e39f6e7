"""An announcement with nothing to see is refused on every way in (HTTP API, `feed publish`), with
a clear error, and nothing reaches Redis."""

from __future__ import annotations

from feed.bus import Bus
from feed.embedded import RedisProcess
from tests.web.test_api import Api, api  # noqa: F401 - the fixture
from tests.web.test_cli import assert_one_clear_line, feed

INVISIBLE = {
    "zero-width": "\u200b\u200c\u200d",
    "word joiner and BOM": "\u2060\ufeff",
    "bidirectional marks": "\u200f\u061c\u2066\u2069",
    "spaces": "\u00a0\u3000 \t\n",
    "hangul filler": "\u3164",
    "braille blank": "\u2800",
    "tags": "\U000e0001\U000e0041",
}


async def test_the_api_refuses_an_announcement_with_no_visible_character(
    api: Api,  # noqa: F811 - the fixture
    redis: RedisProcess,
) -> None:
    bus = Bus(redis.url)
    try:
        for text in INVISIBLE.values():
            await refused_then_taken(api, bus, text)
    finally:
        await bus.aclose()


async def refused_then_taken(client: Api, bus: Bus, text: str) -> None:
    before = await bus.sync("venue")
    for body_text in (text, {"fr": "Bienvenue", "ar": text}):
        status, body, _ = await client.call(
            "POST", "/api/announcements", who="moderator", body={"text": body_text}
        )
        assert status == 422, body
        assert body["error"]["code"] == "invalid"
        assert body["error"]["field"] == "text"
        assert "visible" in body["error"]["message"]
    after = await bus.sync("venue")
    assert (after.epoch, after.seq) == (before.epoch, before.seq), f"{text!r} reached Redis"
    status, body, _ = await client.call(
        "POST", "/api/announcements", who="moderator", body={"text": f"{text}Bienvenue{text}"}
    )
    assert status in (200, 201, 202), body  # the same marks around a word are fine


def test_feed_publish_refuses_it_with_one_clear_line(redis: RedisProcess) -> None:
    code, out, err = feed("publish", "announce", "\u200b \u2060", "--redis-url", redis.url)
    assert code == 2 and out == ""
    assert_one_clear_line(err)
    assert "visible" in err
