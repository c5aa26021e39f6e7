"""What the websocket endpoint lets go of after the upgrade (web.ws.shed): aiohttp's private
attributes, so these tests fail when an aiohttp upgrade renames them (the memory would silently
come back), and show that a connection that let go of them still works both ways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from web.ws import shed

Shed = dict[str, object]


@pytest.fixture
async def echo() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Shed]]:
    """A server whose websocket handler sheds after the upgrade, then echoes text frames."""
    seen: Shed = {}

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=float(request.query.get("heartbeat", 25)))
        await ws.prepare(request)
        seen["shed"] = shed(request, ws)
        seen["handler"] = request.protocol
        seen["request"] = request
        while True:
            msg = await ws.receive()
            if msg.type != WSMsgType.TEXT:
                break
            if msg.data == "close":
                await ws.close(code=4000, message=b"asked")
                break
            await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    async with TestClient(TestServer(app)) as client:
        yield client, seen


async def test_aiohttp_still_has_what_is_shed(
    echo: tuple[TestClient[web.Request, web.Application], Shed],
) -> None:
    client, seen = echo
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("hello")
        assert (await ws.receive()).data == "hello"
        # Every attribute was found as expected and let go of: False means aiohttp changed.
        assert seen["shed"] is True
        handler = seen["handler"]
        assert handler._parser is None  # type: ignore[attr-defined]
        assert len(handler._messages) == 0  # type: ignore[attr-defined]
        assert seen["request"]._cache == {}  # type: ignore[attr-defined]


async def test_a_connection_that_shed_works_both_ways(
    echo: tuple[TestClient[web.Request, web.Application], Shed],
) -> None:
    client, seen = echo
    async with client.ws_connect("/ws") as ws:
        texts = [f"message {i}" * (i + 1) for i in range(200)]
        for text in texts:  # many frames per read, some across reads
            await ws.send_str(text)
        assert [(await ws.receive()).data for _ in texts] == texts
        await ws.ping(b"are you there")
        await ws.send_str("after the ping")
        assert (await ws.receive()).data == "after the ping"
        # Cached properties are computed again when asked for.
        request = seen["request"]
        assert isinstance(request, web.Request)
        assert request.remote == "127.0.0.1"
        assert request.path == "/ws"
        await ws.send_str("close")
        msg = await ws.receive()
        assert (msg.type, ws.close_code) == (WSMsgType.CLOSE, 4000)
    await asyncio.sleep(0)


async def test_heartbeats_still_end_a_silent_peer(
    echo: tuple[TestClient[web.Request, web.Application], Shed],
) -> None:
    client, seen = echo
    # A peer that does not answer pings is let go of after heartbeat and a half.
    async with client.ws_connect("/ws?heartbeat=0.2", autoping=False) as ws:
        msg = await ws.receive(timeout=5)
        assert msg.type == WSMsgType.PING
        while msg.type not in (WSMsgType.CLOSE, WSMsgType.CLOSED):
            msg = await ws.receive(timeout=5)
    assert seen["shed"] is True


async def test_a_refused_upgrade_sheds_nothing() -> None:
    """A plain GET on the endpoint is answered over HTTP: nothing is let go of before."""
    seen: Shed = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        try:
            await ws.prepare(request)
        except web.HTTPBadRequest:
            seen["shed"] = shed(request, ws)
            seen["parser"] = request.protocol._parser
            raise
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    async with TestClient(TestServer(app)) as client:
        for _ in range(2):  # the same connection serves the next request
            answer = await client.get("/ws")
            assert answer.status == 400
    assert seen["shed"] is False
    assert seen["parser"] is not None
