"""Latency counts kept on the hot path, cheap enough to update once per write turn; /metrics
(web.metrics) reads them at scrape time."""

from __future__ import annotations

import bisect

# Seconds from the first frame handed out in a turn of the event loop to its last write.
FANOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """Cumulative-bucket latency counts, cheap enough to update once per write turn."""

    def __init__(self, bounds: tuple[float, ...] = FANOUT_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        running, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out
