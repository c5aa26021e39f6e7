"""The benchmark's baseline: the websocket server most people would write first.

An aiohttp server behind the same Redis as the feed: it follows the same bus and, for each
message, awaits `send_str` to each subscriber of its channel in turn. It keeps no state, no
history and no positions: no snapshot, no resume. `feed bench` runs it beside `feed serve` on the
same machine, in the same run, and reports the feed's figures as ratios to it.

Run alone: `python -m feed.bench.naive --port 8090 --redis-url redis://127.0.0.1:6379/0`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections import defaultdict
from collections.abc import AsyncIterator

import orjson
import redis.asyncio as aioredis
from aiohttp import WSMsgType, web

from feed import keys

SUBSCRIBERS: web.AppKey[dict[str, set[web.WebSocketResponse]]] = web.AppKey("subscribers")
REDIS_URL: web.AppKey[str] = web.AppKey("redis_url")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=25.0)
    await ws.prepare(request)
    subscribers = request.app[SUBSCRIBERS]
    mine: list[str] = []
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = orjson.loads(msg.data)
            if data.get("type") == "subscribe":
                for channel in data.get("channels", []):
                    subscribers[channel].add(ws)
                    mine.append(channel)
                    await ws.send_str(
                        orjson.dumps({"type": "subscribed", "channel": channel}).decode()
                    )
    finally:
        for channel in mine:
            subscribers[channel].discard(ws)
    return ws


async def follow(app: web.Application) -> None:
    """Relay every bus message to its channel's sockets, one awaited send after another; a lost
    subscription is said and taken again (else a baseline that fell behind would go silent and
    measure nothing)."""
    subscribers = app[SUBSCRIBERS]
    while True:
        client = aioredis.Redis.from_url(app[REDIS_URL])
        try:
            pubsub = client.pubsub()
            await pubsub.subscribe(keys.BUS)
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                text = message["data"].decode()
                channel = orjson.loads(text)["channel"]
                for ws in list(subscribers.get(channel, ())):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.send_str(text)
        except (aioredis.RedisError, OSError) as exc:
            print(f"naive: lost the Redis subscription ({exc!r}); subscribing again", flush=True)
            await asyncio.sleep(0.1)
        finally:
            await client.aclose()


async def _follower(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(follow(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(redis_url: str) -> web.Application:
    app = web.Application()
    subscribers: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
    app[SUBSCRIBERS] = subscribers
    app[REDIS_URL] = redis_url
    app.cleanup_ctx.append(_follower)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    return app


async def main(port: int, redis_url: str, reuse_port: bool = False) -> None:
    runner = web.AppRunner(create_app(redis_url), handle_signals=False, access_log=None)
    await runner.setup()
    # The same accept queue as `feed serve`: the comparison is about fan-out, not accepting.
    await web.TCPSite(
        runner, "127.0.0.1", port, backlog=4096, reuse_port=reuse_port or None
    ).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument(
        "--reuse-port", action="store_true", help="share the port with other processes"
    )
    args = parser.parse_args()
    asyncio.run(main(args.port, args.redis_url, args.reuse_port))
