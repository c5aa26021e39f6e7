"""`feed serve`: the process around the application, with its embedded Redis and signals."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from feed.bus import redacted
from feed.embedded import EmbeddedRedis
from feed.settings import Settings
from web.app import create_app

log = logging.getLogger(__name__)


async def serve(settings: Settings, *, demo: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then close websockets (1001) and stop the embedded Redis.
    With `demo`, also play the demo program on its accelerated clock."""
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir)
        # On this (main) thread, not a worker's: the child's parent-death signal follows the
        # thread that started it, and only the main thread lives as long as the process.
        url = embedded.start()
        where = "started" if embedded.owner else "shared"
        log.info("embedded Redis %s in %s", where, embedded.data_dir)
    if demo:
        from publisher.demo import clock  # noqa: PLC0415

        app = create_app(settings, url, clock=clock(settings.demo_rate), demo=True)
    else:
        app = create_app(settings, url)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        log.info(
            "feed serving on http://%s:%d (Redis: %s)", settings.host, settings.port, redacted(url)
        )
        takeover = asyncio.create_task(_take_over(embedded)) if embedded else None
        await stop.wait()
        log.info("stopping")
        if takeover:
            takeover.cancel()
    finally:
        await runner.cleanup()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        log.info("stopped")


async def _take_over(embedded: EmbeddedRedis) -> None:
    """A server sharing another's embedded Redis starts it again if that server stops."""
    while not embedded.owner:
        await asyncio.sleep(1.0)
        if embedded.try_own():  # main thread, as above; a fraction of a second
            log.info("the owner of the embedded Redis stopped; restarted it here")
