"""Loops a process runs for as long as it lives: the Redis subscription and the syncer (feed.relay),
the announcement expiry (web.app), the presence reports (web.presence).

None of them may die of an error: Redis going away (Unavailable) is expected, said once when it
starts and once when it ends; anything else is logged with its traceback each time, and the loop
goes on. Only a
cancellation ends them (some libraries turn one into their own error: feed.errors knows).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from feed.errors import Unavailable, raise_if_cancelled


async def every(
    seconds: float, work: Callable[[], Awaitable[object]], *, what: str, log: logging.Logger
) -> None:
    """Run `work` every `seconds` until cancelled. `what` names it in the log ("announcement
    expiry"): "postponed" once per outage of Redis, "resumed" once when it ends."""
    postponed = False
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception as exc:
            raise_if_cancelled(exc)
            if not isinstance(exc, Unavailable):
                # Anything else is no outage: said every time, with its traceback.
                log.exception("%s failed; trying again", what)
            elif not postponed:
                log.info("%s postponed until Redis answers: %s", what, exc)
                postponed = True
        else:
            if postponed:
                log.info("%s resumed", what)
            postponed = False


async def forever(
    loop: Callable[[], Awaitable[object]],
    *,
    what: str,
    log: logging.Logger,
    on_crash: Callable[[], None] = lambda: None,
    pause: float = 1.0,
) -> None:
    """Run a loop that should never end; if a bug ends it, say so, call `on_crash` (the relay
    goes unready), and start it again after `pause` seconds."""
    while True:
        try:
            await loop()
        except Exception as exc:
            raise_if_cancelled(exc)
            log.exception("%s failed; restarting it", what)
            on_crash()
            await asyncio.sleep(pause)
