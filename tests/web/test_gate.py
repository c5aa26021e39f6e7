"""Who may connect: the websocket Origin allow-list, CORS for the API, connections per address."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import aiohttp
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from feed.embedded import RedisProcess
from tests.conftest import FeedServer, connect

Servers = Callable[..., FeedServer]


async def refused(url: str, **kwargs: object) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as caught:
        async with websockets.connect(url, open_timeout=5, **kwargs):  # type: ignore[arg-type]
            pass
    return caught.value.response.status_code, bytes(caught.value.response.body or b"")


async def test_pages_of_other_origins_cannot_open_websockets(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, env={"FEED_ALLOWED_ORIGINS": "https://screens.example.org"})
    status, body = await refused(server.ws_url, origin="https://evil.example")
    assert status == 403 and b"https://evil.example" in body and b'"forbidden"' in body
    own = f"http://127.0.0.1:{server.port}"
    for origin in (own, "https://screens.example.org", "HTTPS://Screens.Example.org/", None):
        kwargs = {"origin": origin} if origin else {}
        async with connect(server.ws_url, **kwargs) as client:  # no Origin: not a browser
            got = await client.subscribe(["venue"])
            assert got[-1]["type"] == "subscribed"


async def test_any_origin_when_configured_so(redis: RedisProcess, feed_server: Servers) -> None:
    server = feed_server(redis.url, env={"FEED_ALLOWED_ORIGINS": "*"})
    async with connect(server.ws_url, origin="https://anywhere.example") as client:
        assert (await client.subscribe(["venue"]))[-1]["type"] == "subscribed"


async def test_cors_only_for_the_configured_origins(
    redis: RedisProcess, feed_server: Servers
) -> None:
    plain = feed_server(redis.url)
    allowed = "https://program.example.org"
    with_cors = feed_server(redis.url, env={"FEED_CORS_ORIGINS": allowed})
    preflight = {"Origin": allowed, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    async with aiohttp.ClientSession() as http:
        async with http.get(plain.url + "/api/me", headers={"Origin": allowed}) as answer:
            assert answer.status == 401 and "Access-Control-Allow-Origin" not in answer.headers
        async with http.options(with_cors.url + "/api/announcements", headers=preflight) as answer:
            assert answer.status == 204
            assert answer.headers["Access-Control-Allow-Origin"] == allowed
            assert "Authorization" in answer.headers["Access-Control-Allow-Headers"]
        # Error answers carry the header too, so the page can read why.
        async with http.get(with_cors.url + "/api/me", headers={"Origin": allowed}) as answer:
            assert answer.status == 401
            assert answer.headers["Access-Control-Allow-Origin"] == allowed
        other = preflight | {"Origin": "https://evil.example"}
        async with http.options(with_cors.url + "/api/announcements", headers=other) as answer:
            assert answer.status == 403
            assert (await answer.json())["error"]["code"] == "forbidden"
            assert "Access-Control-Allow-Origin" not in answer.headers
        async with http.get(
            with_cors.url + "/api/me", headers={"Origin": "https://evil.example"}
        ) as answer:
            assert "Access-Control-Allow-Origin" not in answer.headers


async def test_connections_per_address_are_limited(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, env={"FEED_MAX_CONNECTIONS_PER_IP": "3"})
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(server.ws_url)) for _ in range(3)]
        status, body = await refused(server.ws_url)
        assert status == 429 and b"at most 3" in body
        await clients[0].conn.close()
        await clients[0].conn.wait_closed()
        for _ in range(50):  # the server sees the close a moment later
            try:
                async with connect(server.ws_url) as again:
                    assert (await again.subscribe(["venue"]))[-1]["type"] == "subscribed"
                break
            except InvalidStatus:
                continue
        else:
            pytest.fail("a freed connection slot was not given back")


@pytest.mark.parametrize(
    ("name", "value"),
    [("FEED_ALLOWED_ORIGINS", "screens.example.org"), ("FEED_CORS_ORIGINS", "ftp://x")],
)
def test_bad_origin_settings_stop_the_start(
    redis: RedisProcess, feed_server: Servers, name: str, value: str
) -> None:
    with pytest.raises(RuntimeError, match="is not an origin"):
        feed_server(redis.url, env={name: value})


async def test_behind_a_trusted_proxy_the_forwarded_address_and_host_count(
    redis: RedisProcess, feed_server: Servers
) -> None:
    proxied = feed_server(
        redis.url,
        env={"FEED_MAX_CONNECTIONS_PER_IP": "2", "FEED_TRUSTED_PROXIES": "127.0.0.1, ::1"},
    )
    plain = feed_server(redis.url, env={"FEED_MAX_CONNECTIONS_PER_IP": "2"})
    phone = {"X-Forwarded-For": "203.0.113.7, 10.1.2.3"}  # a spoofed first hop, then the real
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(connect(proxied.ws_url, additional_headers=phone))
        status, _ = await refused(proxied.ws_url, additional_headers=phone)
        assert status == 429  # 10.1.2.3 is at its limit...
        other = {"X-Forwarded-For": "10.1.2.4"}
        async with connect(proxied.ws_url, additional_headers=other) as client:  # ...not .4
            assert (await client.subscribe(["venue"]))[-1]["type"] == "subscribed"
        # A server that trusts no proxy ignores the header: everyone is 127.0.0.1.
        for n in range(2):
            forged = {"X-Forwarded-For": f"10.9.9.{n}"}
            await stack.enter_async_context(connect(plain.ws_url, additional_headers=forged))
        assert (await refused(plain.ws_url, additional_headers={"X-Forwarded-For": "1.2.3.4"}))[
            0
        ] == 429
    # The page's own origin, as the proxy forwarded the host it was opened on.
    page = {"X-Forwarded-Host": "feed.venue.example"}
    async with connect(
        proxied.ws_url, origin="https://feed.venue.example", additional_headers=page
    ) as client:
        assert (await client.subscribe(["venue"]))[-1]["type"] == "subscribed"
    status, _ = await refused(
        plain.ws_url, origin="https://feed.venue.example", additional_headers=page
    )
    assert status == 403


async def test_a_page_of_no_origin_is_refused_even_through_a_trusted_proxy(
    redis: RedisProcess, feed_server: Servers
) -> None:
    server = feed_server(redis.url, env={"FEED_TRUSTED_PROXIES": "127.0.0.1"})
    status, _ = await refused(server.ws_url, origin="null")  # a sandboxed frame, a file
    assert status == 403
