"""`feed serve`: the processes around the application, with the embedded Redis and signals.

With `--workers N` (N > 1) the command becomes a supervisor: it starts (or shares) the embedded
Redis, then N worker processes that each bind the same port with SO_REUSEPORT, so the kernel
spreads new connections over them. Each worker is a whole server with its own Redis subscription
and hub; clients resume on any of them. A worker that dies is started again; SIGTERM or SIGINT
stops them all, each closing its websockets with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import resource
import shutil
import signal
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_log import AccessLogger
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from feed import logs, zones
from feed.bus import redacted
from feed.clock import REAL, Clock
from feed.embedded import EmbeddedRedis, die_with_parent
from feed.errors import ConfigError
from feed.settings import Settings
from web.app import METRICS, create_app
from web.capacity import Capacity, CapacityCollector, cap_for
from web.metrics import render
from web.worker_metrics import WorkerMetrics

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0  # seconds workers have to stop before they are killed
RESTART_DELAY = 1.0  # seconds before a worker that died is started again...
MAX_RESTART_DELAY = 30.0  # ...doubling while they keep dying, up to this
# Connections waiting to be accepted (the kernel caps it at net.core.somaxconn: 4096 on Linux
# since 5.4). After a wifi blip a whole venue's phones reconnect within a second: a SYN that finds
# the queue full is dropped and retried a second later, then three seconds later.
BACKLOG = 4096


def run(settings: Settings, *, demo: bool = False) -> None:
    """Serve until SIGTERM or SIGINT: in this process, or in `settings.workers` workers."""
    if settings.workers == 1:
        asyncio.run(serve(settings, demo=demo))
        return
    if settings.port == 0:
        raise ConfigError("--workers needs a fixed --port: every worker binds the same one")
    Supervisor(settings, demo=demo).run()


def _clock(demo: bool, settings: Settings) -> Clock:
    if not demo:
        return REAL
    from publisher.demo import clock  # noqa: PLC0415 - only the demo needs it

    return clock(settings.demo_rate)


async def serve(settings: Settings, *, demo: bool = False) -> None:
    """One process: the embedded Redis if none is configured, and the application.
    With `demo`, also play the demo program on its accelerated clock."""
    url, embedded = redis_for(settings)
    takeover = asyncio.create_task(_take_over(embedded)) if embedded else None
    try:
        await serve_app(settings, url, clock=_clock(demo, settings), demo=demo)
    finally:
        if takeover:
            takeover.cancel()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        log.info("stopped")


CLIENT_FAULTS = (HttpProcessingError, RequestPayloadError)


class ClientFaults(logging.Filter):
    """aiohttp logs at ERROR, with a traceback, a request body its parser refuses after the
    answer went out (a body that does not decompress): the client's doing, not the server's.
    One line at INFO instead, so a caller cannot fill the error log at will."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name.startswith("aiohttp.") and isinstance(exc, CLIENT_FAULTS):
            record.levelno, record.levelname = logging.INFO, "INFO"
            reason = str(exc).replace("\n", " ")
            record.msg, record.args = "refused an unreadable request body: %s", (reason,)
            record.exc_info = record.exc_text = None
        return True


class AccessLog(AccessLogger):
    """aiohttp's access log, where a websocket session (101, logged when it ends) is a line only
    at debug level: at a venue that is a line per phone, twenty thousand after a wifi blip (about
    70 us of CPU each, a tenth of a reconnect's cost), and /metrics counts them already."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if response.status == 101 and not self.logger.isEnabledFor(logging.DEBUG):
            return
        super().log(request, response, time)


def raise_open_file_limit() -> int:
    """Every websocket is a file descriptor: take the soft limit up to the hard one (often
    1024 -> 1048576), so a server is not capped at about a thousand clients. Returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


async def serve_app(
    settings: Settings,
    url: str,
    *,
    clock: Clock,
    demo: bool,
    reuse_port: bool = False,
    peers: WorkerMetrics | None = None,
) -> None:
    """Run the application on `url`'s Redis until SIGTERM or SIGINT, then close websockets with
    1001 and stop. `demo` plays the demo program (in one process only). `peers`: this worker's
    part in answering /metrics for all workers."""
    # Set here, not only by the command line: workers are fresh processes (spawned).
    zones.prefer(settings.tzdata)
    log.info("%s", zones.summary(zones.trusted(), settings.venue_zone, clock.ms()))
    files = raise_open_file_limit()
    if files < 4096:
        log.warning("open files are limited to %d: at most %d clients", files, cap_for(files))
    app = create_app(settings, url, clock=clock, demo=demo)
    if peers is not None:
        peers.attach(app, lambda: render(app[METRICS]))
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=5.0, access_log_class=AccessLog
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    capacity = Capacity.from_limit()
    loop.set_exception_handler(capacity.exception_handler(loop.get_exception_handler()))
    listener: asyncio.Server | None = None
    try:
        await runner.setup()
        server = runner.server
        assert server is not None

        def connections() -> int:
            # aiohttp keeps its connections in a dict; its public list is a copy per call, too
            # dear on every accept of a reconnect storm.
            held = getattr(server, "_connections", None)
            return len(held) if held is not None else len(server.connections)

        app[METRICS].register(CapacityCollector(capacity, connections))
        # A long accept queue: after a wifi blip thousands of phones reconnect at once. At the
        # cap, a connection is answered 503 at once instead (web/capacity.py).
        listener = await loop.create_server(
            capacity.factory(server, connections),
            settings.host,
            settings.port,
            backlog=BACKLOG,
            reuse_port=reuse_port or None,
        )
        log.info(
            "feed serving on http://%s:%d (Redis: %s); at most %d connections",
            settings.host, settings.port, redacted(url), capacity.cap,
        )  # fmt: skip
        tune_gc(settings.gc)
        await stop.wait()
        log.info("stopping")
    finally:
        if listener is not None:
            listener.close()  # no new connections while the others are closed with 1001
        await runner.cleanup()


LOOK_AFTER_EVERY = 0.5  # seconds between looks at the embedded Redis

GC_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)


def tune_gc(mode: str) -> None:
    """With thousands of connections, each holding objects the cyclic collector walks, its
    collections pause every client at once. "tuned": what exists once the server is up (modules,
    the application) is frozen out of collections for good, and young collections run after
    50,000 allocations instead of 700. Garbage cycles are still collected; docs/performance.md
    has the figures with and without."""
    if mode != "tuned":
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, middle, old)


def redis_for(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """The Redis to use: the configured one, else the embedded one of the data folder, started
    (or shared with the `feed serve` that owns it). Call it on the main thread: the child's
    parent-death signal follows the thread that started it, and only the main thread lives as
    long as the process."""
    if settings.redis_url is not None:
        return settings.redis_url, None
    embedded = EmbeddedRedis(settings.data_dir)
    url = embedded.start()
    log.info("embedded Redis %s in %s", "started" if embedded.owner else "shared",
             embedded.data_dir)  # fmt: skip
    return url, embedded


def take_over(embedded: EmbeddedRedis) -> None:
    """Look after the embedded Redis (on the main thread, as above; a fraction of a second):
    the owner starts its redis-server again if it died; a server sharing another's starts it
    if that server stopped."""
    if embedded.owner:
        embedded.revive()
    elif embedded.try_own():
        log.info("the owner of the embedded Redis stopped; restarted it here")


async def _take_over(embedded: EmbeddedRedis) -> None:
    while True:
        await asyncio.sleep(LOOK_AFTER_EVERY)
        take_over(embedded)


class Supervisor:
    """Starts the workers, starts again those that die, and stops them all on a signal."""

    def __init__(self, settings: Settings, *, demo: bool) -> None:
        self.settings = settings
        self.demo = demo
        self.clock = _clock(demo, settings)  # one clock for all: the same virtual time
        self.workers: list[BaseProcess | None] = [None] * settings.workers
        self._started = [0.0] * settings.workers
        self._context = multiprocessing.get_context("spawn")
        self._stopping = False
        # Where the workers meet to answer /metrics for all (web/worker_metrics.py): private
        # to this user, gone with the supervisor.
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="feed-workers-"))

    def run(self) -> None:
        url, embedded = redis_for(self.settings)
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        delay = RESTART_DELAY
        try:
            for index in range(len(self.workers)):
                self._start(index, url)
            while not self._stopping:
                running = [w.sentinel for w in self.workers if w is not None]
                wait(running, timeout=1.0)
                if embedded is not None:
                    take_over(embedded)
                for index, worker in enumerate(self.workers):
                    if worker is None or worker.is_alive() or self._stopping:
                        continue
                    if time.monotonic() - self._started[index] > 2 * MAX_RESTART_DELAY:
                        delay = RESTART_DELAY  # it had been running well: not a crash loop
                    log.error("worker %d exited with %s; starting it again in %.0f s", index,
                              worker.exitcode, delay)  # fmt: skip
                    until = time.monotonic() + delay
                    while not self._stopping and time.monotonic() < until:
                        time.sleep(0.1)  # short naps: a stop signal is not kept waiting
                    delay = min(delay * 2, MAX_RESTART_DELAY)
                    if not self._stopping:
                        self._start(index, url)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if embedded is not None:
                embedded.stop()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            log.info("stopped")

    def _start(self, index: int, url: str) -> None:
        # Only the first worker plays the demo; the others share its clock.
        demo_driver = self.demo and index == 0
        worker = self._context.Process(
            target=_worker,
            args=(
                self.settings,
                url,
                self.clock,
                demo_driver,
                WorkerMetrics(self.metrics_dir, index, len(self.workers)),
            ),
            name=f"feed-worker-{index}",
        )
        worker.start()
        self.workers[index] = worker
        self._started[index] = time.monotonic()

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _stop_all(self) -> None:
        alive = [w for w in self.workers if w is not None and w.is_alive()]
        for worker in alive:
            worker.terminate()  # SIGTERM: each closes its websockets with 1001
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in alive:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.warning("%s did not stop in time; killing it", worker.name)
                worker.kill()
                worker.join()


def _worker(settings: Settings, url: str, clock: Clock, demo: bool, peers: WorkerMetrics) -> None:
    """The body of a worker process."""
    index = peers.index
    die_with_parent()  # also when the supervisor is killed outright
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the loop's own handlers are set
    logs.setup(
        settings.log_level,
        logs.FORMAT.replace("%(name)s", f"worker {index} %(name)s"),
        style=settings.log_format,
        filters=(ClientFaults(),),
        worker=index,
    )
    asyncio.run(serve_app(settings, url, clock=clock, demo=demo, reuse_port=True, peers=peers))
