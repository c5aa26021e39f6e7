"""The loops a process lives by never die of an error, and say an outage once."""

from __future__ import annotations

import asyncio
import logging

import pytest

from feed import loops
from feed.errors import InvalidMessage, Unavailable


async def test_every_says_an_outage_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    outcomes = iter(["down", "down", "down", "ok", "bug", "refused", "ok"])
    done = asyncio.Event()

    async def work() -> None:
        outcome = next(outcomes, None)
        if outcome is None:
            done.set()
        elif outcome == "down":
            raise Unavailable("Redis is away")
        elif outcome == "bug":
            raise KeyError("oops")
        elif outcome == "refused":
            raise InvalidMessage("not an outage")

    log = logging.getLogger("test.loops")
    with caplog.at_level(logging.INFO, logger="test.loops"):
        task = asyncio.create_task(loops.every(0.001, work, what="the chore", log=log))
        await asyncio.wait_for(done.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    lines = [r.getMessage() for r in caplog.records]
    assert sum("the chore postponed until Redis answers" in line for line in lines) == 1
    assert sum(line == "the chore resumed" for line in lines) == 1
    # A bug, and one of our errors that is no outage, are each said, with a traceback.
    assert sum("the chore failed; trying again" in line for line in lines) == 2


async def test_forever_starts_a_crashed_loop_again(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    crashes: list[int] = []
    forever = asyncio.Event()

    async def loop() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("a bug")
        forever.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(
        loops.forever(
            loop, what="the loop", log=logging.getLogger("test.loops"),
            on_crash=lambda: crashes.append(1), pause=0.001,
        )
    )  # fmt: skip
    await asyncio.wait_for(forever.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(runs) == 3 and len(crashes) == 2
