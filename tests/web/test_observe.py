"""Seeing what happens: /metrics, and who is watching."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import InvalidStatus

from feed.bus import Bus
from feed.embedded import RedisProcess
from publisher import Publisher, tokens
from tests.conftest import ROOT, FeedServer, connect

Servers = Callable[..., FeedServer]


async def scrape(server: FeedServer) -> dict[str, float]:
    """The samples of /metrics, by name with labels: {'feed_connections{kind="screen"}': 2.0}."""
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await answer.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def test_metrics_count_connections_deliveries_resumes_and_redis(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    admin = aioredis.Redis.from_url(redis.url)
    async with (
        Publisher(redis.url) as pub,
        connect(server.ws_url + "?screen=door-atlas-1") as screen,
        connect(server.ws_url + "?kind=phone") as phone,
        connect(server.ws_url + "?kind=console") as console,
        connect(server.ws_url) as script,
    ):
        for client in (screen, phone, console, script):
            got = await client.subscribe(["room:atlas"])
        epoch = got[-1]["epoch"]
        for delay in (1, 2, 3):
            await pub.status("atlas", "delayed", delay=delay)
        for client in (screen, phone, console, script):
            await client.events(3)
        async with connect(server.ws_url) as back:
            await back.subscribe(["room:atlas"], since={"room:atlas": {"epoch": epoch, "seq": 1}})
            await back.subscribe(["venue"], since={"venue": {"epoch": "gone", "seq": 9}})
        await admin.client_kill_filter(_type="pubsub")
        await pub.status("atlas", "live")
        await screen.events(1, timeout=10)
        for _ in range(100):  # ready again once caught up, a moment after the event
            m = await scrape(server)
            if m["feed_ready"] == 1:
                break
            await asyncio.sleep(0.05)
    await admin.aclose()
    for kind in ("screen", "phone", "console", "other"):
        assert m[f'feed_connections{{kind="{kind}"}}'] == 1
    assert m['feed_subscriptions{channel="room:atlas"}'] == 4
    assert m["feed_events_total"] >= 4
    assert m["feed_deliveries_total"] >= 4 * 4
    assert m["feed_writes_total"] >= 1
    assert m['feed_subscribes_total{start="resumed"}'] == 1
    assert m['feed_subscribes_total{start="resumed_with_snapshot"}'] == 1
    assert m['feed_subscribes_total{start="snapshot"}'] == 4
    assert m["feed_redis_subscriptions_total"] == 2  # the first, and after the kill
    assert m["feed_redis_losses_total"] == 1
    assert m["feed_fanout_seconds_count"] >= 1
    assert m["feed_ready"] == 1
    assert m["feed_slow_disconnects_total"] == 0
    assert m["feed_redis_writable"] == 1
    assert m['feed_snapshots_total{how="encoded"}'] >= 1
    assert "process_resident_memory_bytes" in m


async def test_a_bad_screen_name_is_refused_before_the_upgrade(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server.ws_url + "?screen=%3Cscript%3E"):
            pass
    assert refused.value.response.status_code == 422
    assert b'"field":"screen"' in bytes(refused.value.response.body or b"").replace(b" ", b"")


async def poll(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    ok: Callable[[Any], bool],
    timeout: float = 15,
) -> Any:
    """GET `url` until its JSON answer satisfies `ok` (servers report every few seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as answer:
            assert answer.status == 200, await answer.text()
            body = await answer.json()
        if ok(body):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.25)


async def identify(client: Any, token: str) -> dict[str, Any]:
    """Present a screen token on the websocket, as a kiosk's page does; its answer."""
    await client.send({"type": "identify", "token": token})
    answer: dict[str, Any] = (await client.until(lambda m: m["type"] in ("identified", "error")))[
        -1
    ]
    return answer


async def test_viewers_screens_and_receipts_across_two_servers(
    redis: RedisProcess, feed_server: Servers
) -> None:
    a, b = feed_server(redis.url), feed_server(redis.url)
    bus = Bus(redis.url)
    moderator, _ = await tokens.create(bus, "moderator", [], "desk")
    operator, _ = await tokens.create(bus, "operator", ["atlas"], "door")
    door_token, _ = await tokens.create(bus, "screen", ["atlas"], "door-atlas-1")
    hall_token, hall = await tokens.create(bus, "screen", [], "hall-1")
    await tokens.create(bus, "screen", [], "lobby-2")  # registered, never switched on
    async with (
        aiohttp.ClientSession() as http,
        connect(a.ws_url) as door,
        connect(b.ws_url) as hall_screen,
        connect(b.ws_url + "?kind=phone") as phone,
        # An anonymous client that calls itself a screen: a viewer, whatever it says.
        connect(a.ws_url + "?screen=door-atlas-1") as impostor,
    ):
        assert await identify(door, door_token) == {
            "type": "identified", "screen": "door-atlas-1", "rooms": ["atlas"]
        }  # fmt: skip
        assert (await identify(hall_screen, hall_token))["screen"] == "hall-1"
        refused = await identify(phone, operator)  # a staff token names no screen
        assert (refused["type"], refused["code"]) == ("error", "forbidden")
        assert operator not in str(refused)
        await door.subscribe(["room:atlas", "venue"])
        await hall_screen.subscribe(["venue", "room:atlas", "room:anfa"])
        await phone.subscribe(["room:atlas"])
        await impostor.subscribe(["venue"])
        async with Publisher(redis.url) as pub:  # the rooms exist in Redis: counted by name
            for room in ("atlas", "anfa"):
                await pub.status(room, "live")
        # Viewers per room, summed over both servers (the impostor counts as a screen).
        presence = await poll(
            http, a.url + "/api/presence", operator,
            lambda p: p["rooms"].get("atlas") == {"screen": 2, "phone": 1}
            and p["rooms"].get("venue") == {"screen": 3},
        )  # fmt: skip
        assert presence["rooms"]["anfa"] == {"screen": 1}
        # Only screen tokens' screens are listed, each once, online or not.
        screens = await poll(
            http, b.url + "/api/screens", operator,
            lambda s: [x["online"] for x in s["screens"]] == [True, True, False],
        )  # fmt: skip
        assert [(s["name"], s["rooms"]) for s in screens["screens"]] == [
            ("door-atlas-1", ["atlas"]), ("hall-1", []), ("lobby-2", [])
        ]  # fmt: skip
        assert screens["screens"][2]["last_seen"] is None
        # An emergency: the door screen says it shows it, the hall screen does not.
        async with http.post(
            a.url + "/api/announcements",
            json={"text": "Evacuate", "priority": "emergency"},
            headers={"Authorization": f"Bearer {moderator}"},
        ) as answer:
            made = await answer.json()
        event = (await door.until(lambda m: m.get("kind") == "announce"))[-1]
        await door.send({"type": "ack", "id": event["data"]["id"]})
        # The impostor cannot fake a receipt, nor can a phone.
        for viewer in (impostor, phone):
            await viewer.send({"type": "ack", "id": made["id"]})
            error = (await viewer.until(lambda m: m["type"] == "error"))[-1]
            assert "screen token" in error["message"]
        receipts = await poll(
            http, b.url + f"/api/announcements/{made['id']}/receipts", moderator,
            lambda r: r["shown"],
        )  # fmt: skip
        assert [s["screen"] for s in receipts["shown"]] == ["door-atlas-1"]
        assert receipts["missing"] == ["hall-1"] and receipts["screens"] == 2
        # A screen's token reads nothing of the API; no token, nothing either.
        for token, status in ((door_token, 403), (None, 401)):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for path in (
                "/api/screens",
                "/api/presence",
                f"/api/announcements/{made['id']}/receipts",
            ):
                async with http.get(a.url + path, headers=headers) as answer:
                    assert answer.status == status, path
        # A revoked screen token: the screen is a viewer within a report, and no longer listed.
        bus = Bus(redis.url)
        await tokens.revoke(bus, hall.id)
        await bus.aclose()
        gone = (await hall_screen.until(lambda m: m["type"] == "error", timeout=15))[-1]
        assert gone["code"] == "unauthorized"
        await door.conn.close()
        screens = await poll(
            http, a.url + "/api/screens", operator,
            lambda s: [(x["name"], x["online"]) for x in s["screens"]]
            == [("door-atlas-1", False), ("lobby-2", False)],
        )  # fmt: skip
        assert screens["screens"][0]["last_seen"] > 0


async def test_the_grafana_dashboard_only_uses_metrics_the_server_has(
    redis: RedisProcess, feed_server: Servers
) -> None:
    dashboard = orjson.loads((ROOT / "docs" / "grafana-dashboard.json").read_bytes())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:feed|process)_[a-z_]+)", e)}
    server = feed_server(redis.url)
    async with connect(server.ws_url) as client:
        await client.subscribe(["venue"])
        have = {re.sub(r"\{.*", "", name) for name in await scrape(server)}
    assert used and used <= have, used - have
