"""The budget of new subscriptions: how many channel subscriptions a server starts per second,
across all its clients (issue 18 §3).

A subscription is cheap to ask for and dear to answer (a snapshot, or history read from Redis),
and reconnecting resets any per-connection limit. So the server keeps one budget, a token bucket
of channel subscriptions: while it holds, a subscription starts at once, as before; past it, the
channels wait in a queue served fairly (a few channels of each waiting client in turn, oldest
first) as the budget refills, and the loop is given back between turns, so the clients already
connected (their pings, their events) always come first. Nothing is refused: a client past the
budget is served later, in order. Per-address limits stay opt-in (a venue's crowd shares one
address, FEED_MAX_CONNECTIONS_PER_IP).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from feed.hub import Sink
from feed.protocol import Position
from feed.relay import Relay

log = logging.getLogger(__name__)

TURN = 8  # channels served per waiting client in one turn
YIELD_EVERY = 64  # channels started between two looks at what else the loop has to do


class Admission:
    def __init__(
        self, relay: Relay, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.relay = relay
        self.rate = float(rate)
        self.burst = max(self.rate, 1.0)  # a second's worth at once
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()
        self._waiting: OrderedDict[Sink, dict[str, Position | None]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self.started = 0  # channel subscriptions started
        self.deferred = 0  # of which waited for the budget

    @property
    def waiting(self) -> int:
        return sum(len(channels) for channels in self._waiting.values())

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def subscribe(self, sink: Sink, channels: Iterable[str], since: Mapping[str, Position]) -> None:
        """Start these subscriptions now if the budget allows, else queue them (a channel asked
        again while it waits keeps its place, with the newer position)."""
        names = list(channels)
        if not names:
            return
        self._refill()
        if sink not in self._waiting and self._tokens >= len(names):
            self._tokens -= len(names)
            self.started += len(names)
            self.relay.subscribe(sink, names, since)
            return
        queued = self._waiting.setdefault(sink, {})
        for name in names:
            queued[name] = since.get(name)
        self.deferred += len(names)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._serve(), name="feed-admission")

    def cancel(self, sink: Sink, channels: Iterable[str] | None = None) -> None:
        """Forget waiting subscriptions: some channels (unsubscribed), or all (gone)."""
        queued = self._waiting.get(sink)
        if queued is None:
            return
        for name in queued.copy() if channels is None else channels:
            queued.pop(name, None)
        if not queued:
            del self._waiting[sink]

    async def _serve(self) -> None:
        while self._waiting:
            self._refill()
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.rate)
                continue
            since_yield = 0
            for sink in list(self._waiting):
                if since_yield >= YIELD_EVERY:
                    await asyncio.sleep(0)  # pings and writes of connected clients come first
                    since_yield = 0
                    self._refill()
                queued = self._waiting.get(sink)
                if queued is None:
                    continue
                n = min(TURN, int(self._tokens), len(queued))
                if n < 1:
                    break
                names = list(queued)[:n]
                since = {name: p for name in names if (p := queued.pop(name)) is not None}
                if not queued:
                    del self._waiting[sink]
                self._tokens -= n
                self.started += n
                since_yield += n
                try:
                    self.relay.subscribe(sink, names, since)
                except Exception:
                    # A bug must cost that client its subscription, not everyone in the queue.
                    log.exception("subscribing a waiting client failed")
            # Give the loop back: what the connected clients sent, and their writes, first.
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
