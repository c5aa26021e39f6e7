"""`GET /metrics`: what the server is doing, in Prometheus's text format.

Nothing here runs on the hot path. The hub, the relay and the write path keep plain integer
counts and a small latency histogram as they go; this module reads them when Prometheus
scrapes, with the official `prometheus_client` doing the encoding.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from feed.relay import Relay
    from web.admission import Admission
    from web.client import Client
    from web.outbox import Outbox


class FeedCollector(Collector):
    def __init__(
        self,
        relay: Callable[[], Relay | None],
        clients: set[Client],
        outbox: Outbox,
        admission: Callable[[], Admission | None] = lambda: None,
    ) -> None:
        self._relay = relay
        self._clients = clients
        self._outbox = outbox
        self._admission = admission

    def collect(self) -> Iterator[Metric]:
        kinds = Counter(c.kind for c in self._clients)
        connections = GaugeMetricFamily(
            "feed_connections", "Open websocket connections, by kind of client", labels=["kind"]
        )
        for kind in ("screen", "phone", "console", "other"):
            connections.add_metric([kind], kinds.get(kind, 0))
        yield connections
        outbox = self._outbox
        yield _counter(
            "feed_writes", "Socket writes to clients (each may carry several frames)", outbox.writes
        )
        yield _counter(
            "feed_slow_disconnects",
            "Clients closed with 4008 for leaving too much unread",
            outbox.slow_closes,
        )
        fanout = HistogramMetricFamily(
            "feed_fanout_seconds",
            "From the first frame handed out in a turn of the event loop to its last write",
        )
        fanout.add_metric([], outbox.fanout.buckets(), outbox.fanout.total)
        yield fanout
        admission = self._admission()
        if admission is not None:
            yield _counter(
                "feed_subscriptions_started",
                "Channel subscriptions started, within the budget of FEED_SUBSCRIBE_RATE a second",
                admission.started,
            )
            yield _counter(
                "feed_subscriptions_deferred",
                "Channel subscriptions that waited for the budget (a flood of subscribes)",
                admission.deferred,
            )
            yield GaugeMetricFamily(
                "feed_subscriptions_waiting",
                "Channel subscriptions waiting for the budget now",
                value=admission.waiting,
            )
        relay = self._relay()
        if relay is None:
            return
        hub = relay.hub
        subscribers = GaugeMetricFamily(
            "feed_subscriptions",
            "Clients subscribed, by channel: venue and the program's rooms (with no program, the "
            "rooms Redis holds); other channels count as 'other'",
            labels=["channel"],
        )
        held = ((name, len(ch.subscribers)) for name, ch in hub.channels.items() if ch.subscribers)
        for label, count in sorted(relay.labelled(held).items()):
            subscribers.add_metric([label], count)
        yield subscribers
        counts = hub.counts
        yield _counter("feed_events", "Events received from Redis and fanned out", counts.events)
        yield _counter("feed_deliveries", "Event frames handed to subscribers", counts.deliveries)
        resumes = CounterMetricFamily(
            "feed_subscribes",
            "Subscriptions, by how they started: a snapshot for a new client, a resume with "
            "exactly the missed events (no gap), or a resume that needed a snapshot",
            labels=["start"],
        )
        resumes.add_metric(["snapshot"], counts.snapshots)
        resumes.add_metric(["resumed"], counts.resumed)
        resumes.add_metric(["resumed_with_snapshot"], counts.resumed_with_snapshot)
        yield resumes
        yield _counter(
            "feed_redis_subscriptions",
            "Times Redis confirmed the bus subscription "
            "(the first time, then after each reconnect)",
            relay.subscriptions,
        )
        yield _counter("feed_redis_losses", "Times the bus subscription was lost", relay.losses)
        yield _counter(
            "feed_bad_envelopes",
            "Malformed messages read from the bus and dropped",
            relay.bad_envelopes,
        )
        yield _counter(
            "feed_impossible_events",
            "Events on the bus beyond what Redis holds (never stored there) and dropped",
            counts.impossible,
        )
        yield GaugeMetricFamily(
            "feed_ready", "1 while subscribed to Redis and caught up", value=float(relay.live)
        )
        if relay.writable is not None:
            yield GaugeMetricFamily(
                "feed_redis_writable",
                "1 while Redis takes writes, 0 while it refuses them (out of memory, read-only "
                "replica): screens are still served, but no change can be made",
                value=float(relay.writable),
            )
        snapshots = CounterMetricFamily(
            "feed_snapshots",
            "Snapshots sent, by whether they were encoded or reused the bytes of the same seq",
            labels=["how"],
        )
        snapshots.add_metric(["encoded"], counts.snapshot_encodings)
        snapshots.add_metric(["reused"], counts.snapshot_reuses)
        yield snapshots


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def registry(collectors: Iterable[Collector]) -> CollectorRegistry:
    """A registry of our own (not the global one), with the process's standard metrics."""
    from prometheus_client import GCCollector, PlatformCollector, ProcessCollector  # noqa: PLC0415

    reg = CollectorRegistry()
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    for collector in collectors:
        reg.register(collector)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)


class FollowCollector(Collector):
    """`feed schedule follow`'s state as the follower last recorded it in Redis, read by the
    /metrics handler just before it renders (a collector cannot wait for Redis itself).

    The state is the whole venue's, not a process's: only the process that read it for the
    scrape under way reports it. With `--workers N`, the others (asked for their own figures
    through web.worker_metrics) leave it out rather than repeat an older reading."""

    FRESH = 5.0  # seconds a reading serves the scrape it was made for

    def __init__(self) -> None:
        self._state: dict[str, object] | None = None
        self._read_at = float("-inf")

    @property
    def state(self) -> dict[str, object] | None:
        return self._state

    @state.setter
    def state(self, value: dict[str, object] | None) -> None:
        self._state, self._read_at = value, time.monotonic()

    def collect(self) -> Iterator[Metric]:
        state = self._state
        if not isinstance(state, dict) or time.monotonic() - self._read_at > self.FRESH:
            return
        url = str(state.get("url", ""))
        up = GaugeMetricFamily(
            "feed_program_follow_up",
            "1 while the program's source answers with a program (feed schedule follow), else 0",
            labels=["url"],
        )
        up.add_metric([url], 1.0 if state.get("state") == "ok" else 0.0)
        yield up
        failures = CounterMetricFamily(
            "feed_program_follow_failures",
            "Fetches of the program's source that failed (down, slow, an error, not a program)",
            labels=["url"],
        )
        failures.add_metric([url], float(_number(state.get("failures"))))
        yield failures
        success = GaugeMetricFamily(
            "feed_program_follow_last_success_timestamp_seconds",
            "When the source last answered with a program or 304 (Unix seconds)",
            labels=["url"],
        )
        success.add_metric([url], _number(state.get("last_success")) / 1000)
        yield success


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
