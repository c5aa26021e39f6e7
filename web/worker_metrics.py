"""One scrape for every worker of `feed serve --workers N` (issue 14 §4).

The kernel hands a scrape of `/metrics` to any one worker, and each worker's metrics are
collectors reading its own live objects (web/metrics.py) at scrape time. So values cannot be
left in files for the others to read (they would be stale, and a counter file per object would
be a second bookkeeping beside the objects; prometheus-client's multiprocess mode is made for
its own Counter and Gauge classes, not for custom collectors). Instead each worker also serves
its own metrics on a private unix socket, in a folder the supervisor creates (mode 0700); the
worker that takes a scrape asks the others there, at that moment, and answers with every
worker's series, each labelled `worker="<index>"`, beside `feed_workers` (how many answered).

A worker that does not answer within PEER_TIMEOUT (it is restarting, or stuck) is left out of
that one scrape; `feed_workers_answered` below `feed_workers_expected` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

PEER_TIMEOUT = 2.0  # seconds a worker waits for another's metrics within one scrape
PATH = "/metrics"
Render = Callable[[], bytes]


def socket_path(folder: Path, index: int) -> Path:
    return folder / f"worker-{index}.sock"


class WorkerMetrics:
    """This worker's side: serve its own metrics to the others, gather theirs for a scrape."""

    def __init__(self, folder: Path, index: int, expected: int) -> None:
        self.folder = folder
        self.index = index
        self.expected = expected
        self._runner: web.AppRunner | None = None
        self._render: Render | None = None

    def attach(self, app: web.Application, render: Render) -> None:
        """Answer the app's `/metrics` for every worker; `render` gives this worker's own
        metrics. Call before the app starts (middlewares and signals freeze then)."""
        self._render = render
        app.middlewares.append(self._middleware)
        app.on_startup.append(self._serve)
        app.on_cleanup.append(self._stop)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path != PATH or request.method not in ("GET", "HEAD"):
            return await handler(request)
        response = await handler(request)  # its checks and headers stay those of the app
        if not isinstance(response, web.Response) or response.status != 200:
            return response
        response.body = await self.gather()
        return response

    async def _serve(self, app: web.Application) -> None:
        own = web.Application()
        own.router.add_get(PATH, self._own)
        self._runner = web.AppRunner(own, handle_signals=False, access_log=None)
        await self._runner.setup()
        path = socket_path(self.folder, self.index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by this worker's previous life
        await web.UnixSite(self._runner, str(path)).start()

    async def _stop(self, app: web.Application) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            socket_path(self.folder, self.index).unlink()

    async def _own(self, request: web.Request) -> web.Response:
        assert self._render is not None
        return web.Response(body=self._render(), content_type="text/plain")

    async def gather(self) -> bytes:
        """Every worker's metrics as one Prometheus text answer."""
        assert self._render is not None
        peers = [i for i in range(self.expected) if i != self.index]
        answers = await asyncio.gather(*(self._ask(i) for i in peers))
        texts = {self.index: self._render().decode()}
        texts.update((i, text) for i, text in zip(peers, answers, strict=True) if text is not None)
        registry = CollectorRegistry()
        registry.register(_Merged(texts, self.expected))
        return generate_latest(registry)

    async def _ask(self, index: int) -> str | None:
        path = socket_path(self.folder, index)
        if not path.exists():
            return None
        try:
            async with (
                aiohttp.ClientSession(
                    connector=aiohttp.UnixConnector(path=str(path)),
                    timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT),
                ) as session,
                session.get(f"http://worker-{index}{PATH}") as answer,
            ):
                if answer.status != 200:
                    return None
                return await answer.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("worker %d did not give its metrics: %s", index, exc or type(exc).__name__)
            return None


class _Merged(Collector):
    """The workers' families, each sample labelled with its worker, one family per name."""

    def __init__(self, texts: dict[int, str], expected: int) -> None:
        self._texts = texts
        self._expected = expected

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for index, text in sorted(self._texts.items()):
            for family in _families(text):
                into = merged.get(family.name)
                if into is None:
                    into = Metric(family.name, family.documentation, family.type, family.unit)
                    merged[family.name] = into
                worker = str(index)
                for sample in family.samples:
                    labels = {**sample.labels, "worker": worker}
                    into.add_sample(sample.name, labels, sample.value, sample.timestamp)
        yield from merged.values()
        yield GaugeMetricFamily(
            "feed_workers_expected", "Worker processes of this feed serve", value=self._expected
        )
        yield GaugeMetricFamily(
            "feed_workers_answered",
            "Workers whose metrics are in this answer (fewer: one was restarting or stuck)",
            value=len(self._texts),
        )


def _families(text: str) -> Iterable[Metric]:
    try:
        yield from text_string_to_metric_families(text)
    except ValueError as exc:  # a worker's text that does not parse: its series are left out
        log.warning("could not read a worker's metrics: %s", exc)
