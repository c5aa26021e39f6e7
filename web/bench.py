"""`feed bench`: fan-out measured end to end, beside a naive baseline, in one run.

One private Redis; then, for each server (the feed, and the naive baseline of feed.bench.naive)
and each number of clients: start the server, open the clients in several load generator
processes (feed.bench.loadgen), and run the scenarios:

- burst: M announcements published as fast as the real publish path goes (`Publisher.announce`,
  one atomic Lua call per change); deliveries per second from the first publish to the last
  receipt;
- rate: M announcements at R per second; publish-to-receive latency p50/p99/max;
- storm (the feed only, at the largest N): while announcements flow at R per second, every client
  drops at once and reconnects with its last `(epoch, seq)`; time until all have resumed;
- idle (the feed only): memory per idle connection, subscribed, with nothing flowing;
- rate through the proxy (`--proxy`, at the largest N): the compose file's nginx on loopback in
  front of two feed servers (feed.bench.proxy), to see what the proxy costs in latency and CPU.

Every client checks every message: lost, duplicated and reordered messages are counted. CPU is
read from /proc for the server (with its workers), Redis, and the load generators.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import orjson

from feed.bench import loadgen, proxy
from feed.embedded import RedisProcess, free_port
from feed.errors import InvalidMessage
from publisher import Publisher

CHANNEL = "venue"  # the measured channel: announcements to everyone
CONNECTIONS_PER_SOURCE = 10_000  # clients per local address (one has about 28,000 ports)
# Through the compose file's nginx, which allows 1000 connections per client address
# (limit_conn): the clients come from more addresses rather than the proxy being changed.
CONNECTIONS_PER_SOURCE_PROXIED = 900
TEXT_BYTES = 200  # announcement text: with its envelope, a frame of about 300 bytes
ANNOUNCEMENT_IDS = 8  # ids reused, so the channel's snapshot stays small
TICK = os.sysconf("SC_CLK_TCK")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--clients", default="5000", help="clients, or a comma-separated list (default 5000)"
    )
    p.add_argument("--messages", type=int, default=200, help="messages per scenario (200)")
    p.add_argument("--rate", type=float, default=20.0, help="messages per second, paced (20)")
    p.add_argument("--idle", type=int, default=10_000, help="idle connections; 0 skips (10000)")
    p.add_argument(
        "--storm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the reconnect storm at the largest N (default: yes)",
    )
    p.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the naive baseline (default: yes)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="`feed serve --workers`, and as many naive processes sharing the port (1)",
    )
    p.add_argument(
        "--rooms",
        type=int,
        default=6,
        help="quiet rooms; each client follows venue and one or two of them (6)",
    )
    p.add_argument(
        "--loadgens",
        type=int,
        default=max(2, os.cpu_count() or 1),
        help="load generator processes (default: the number of cores, at least 2)",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for `feed serve` (repeat)",
    )
    p.add_argument(
        "--connects-at-once",
        type=int,
        default=0,
        metavar="N",
        help="connections each load generator opens at once; 0: all (default), as after a blip",
    )
    p.add_argument(
        "--proxy",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also run the 20 msg/s scenario at the largest N through the compose file's nginx"
        " in front of two feed servers, on loopback (needs nginx and PyYAML; default: no)",
    )
    p.add_argument("--json", type=Path, help="write every figure to this JSON file")
    p.add_argument("--plot", type=Path, help="draw the results to this PNG file (matplotlib)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per step (120)")
    p.add_argument(
        "--replot",
        type=Path,
        metavar="JSON",
        help="measure nothing: draw --plot from the figures of an earlier --json",
    )


# ---- processes ---------------------------------------------------------------------------------


def _tree(pid: int) -> Iterator[int]:
    yield pid
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            yield from _tree(int(child))


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its descendants, in seconds."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def memory(pid: int) -> dict[str, int]:
    """Resident and peak resident memory of a process and its descendants, in bytes."""
    rss = peak = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak += int(line.split()[1]) * 1024
    return {"rss": rss, "peak": peak}


@dataclass
class Server:
    kind: str  # "feed" or "naive"
    procs: list[subprocess.Popen[bytes]]  # the feed's supervisor, or each naive process
    port: int  # where clients connect: the server's, or the proxy's
    log: Path
    proxy: list[subprocess.Popen[bytes]] = field(default_factory=list)  # nginx, with --proxy

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def proxy_cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.proxy)

    def memory(self) -> dict[str, int]:
        found = [memory(p.pid) for p in self.procs]
        return {"rss": sum(m["rss"] for m in found), "peak": sum(m["peak"] for m in found)}

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_server(
    kind: str,
    redis_url: str,
    workdir: Path,
    args: argparse.Namespace,
    *,
    workers: int | None = None,
) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    workers = args.workers if workers is None else workers
    if kind == "feed":
        command = [
            sys.executable,
            "-m",
            "web.cli",
            "serve",
            "--port",
            str(port),
            "--redis-url",
            redis_url,
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        ]
        # Every benchmark client comes from 127.0.0.1: no per-address limit here.
        env["FEED_MAX_CONNECTIONS_PER_IP"] = "0"
        for assignment in args.server_env:
            name, _, value = assignment.partition("=")
            env[name] = value
    else:
        # As many naive processes as feed workers, sharing the port: one process may not hold
        # 20,000 files here, and the comparison is about fan-out, not about process count.
        command = [sys.executable, "-m", "feed.bench.naive", "--port", str(port)]
        command += ["--redis-url", redis_url, "--reuse-port"]
    log = workdir / f"{kind}-{port}.log"
    copies = workers if kind == "naive" else 1
    with log.open("wb") as out:
        procs = [
            subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
            for _ in range(copies)
        ]
    server = Server(kind, procs, port, log)
    deadline = time.monotonic() + 30
    while not ping_http(port):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{kind} server did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return server


def ping_http(port: int) -> bool:
    import urllib.request  # noqa: PLC0415

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@dataclass
class LoadGens:
    """The load generator processes, driven in step."""

    conns: list[Connection] = field(default_factory=list)
    procs: list[BaseProcess] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        count: int,
        url: str,
        rooms: int,
        clients: int,
        *,
        per_source: int = CONNECTIONS_PER_SOURCE,
        connects_at_once: int = 0,
    ) -> LoadGens:
        context = multiprocessing.get_context("spawn")
        gens = cls()
        names = tuple(f"room:bench-{i + 1}" for i in range(rooms))
        # Several loopback addresses (127.0.0.2, ...) when one would run short of ports.
        sources = tuple(f"127.0.0.{2 + i}" for i in range(max(1, -(-clients // per_source))))
        for i in range(count):
            mine, theirs = context.Pipe()
            proc = context.Process(
                target=loadgen.serve,
                args=(theirs, url, CHANNEL, names, sources, connects_at_once),
                name=f"bench-loadgen-{i}",
            )
            proc.start()
            gens.conns.append(mine)
            gens.procs.append(proc)
        return gens

    async def call(self, *commands: tuple[Any, ...]) -> list[dict[str, Any]]:
        """Send each process its command (one for all, or one each) and gather the replies."""
        for i, conn in enumerate(self.conns):
            conn.send(commands[i] if len(commands) > 1 else commands[0])
        return list(await asyncio.gather(*(asyncio.to_thread(c.recv) for c in self.conns)))

    async def connect(self, clients: int, within: float) -> dict[str, Any]:
        shares = [
            clients // len(self.conns) + (i < clients % len(self.conns))
            for i in range(len(self.conns))
        ]
        replies = await self.call(*[("connect", n, within) for n in shares])
        return {
            "clients": sum(r["clients"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "seconds": max(r["seconds"] for r in replies),
        }

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.pid is not None)

    def stop(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


# ---- scenarios ---------------------------------------------------------------------------------


def text(n: int) -> str:
    head = f"{loadgen.MARK}{time.time_ns()} #{n} "
    return head + "x" * max(0, TEXT_BYTES - len(head))


async def publish(pub: Publisher, n: int) -> None:
    await pub.announce(text(n), announcement_id=f"bench-{n % ANNOUNCEMENT_IDS}")


async def publish_paced(pub: Publisher, count: int, rate: float | None) -> float:
    """Publish `count` messages, at `rate` per second or as fast as possible; returns the start."""
    started = time.time()
    for n in range(count):
        if rate:
            await asyncio.sleep(max(0.0, started + n / rate - time.time()))
        await publish(pub, n)
    return started


STORM_STEPS = ("slot", "tcp", "upgrade", "subscribe")


def storm_steps(flat: array[float]) -> dict[str, dict[str, float]]:
    """Where a reconnect storm's time goes, per client: waiting in the load generator for a
    connection slot, the TCP connect (the kernel's accept queue), the websocket upgrade (the
    server accepting and answering 101), and the subscription with its catch-up (resume or
    snapshot, until every channel is live). p50/p99/max of each, in seconds."""
    out = {}
    for i, name in enumerate(STORM_STEPS):
        values = sorted(flat[i :: len(STORM_STEPS)])
        out[name] = {
            "p50": quantile(values, 0.5),
            "p99": quantile(values, 0.99),
            "max": values[-1] if values else float("nan"),
        }
    return out


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def summarize(replies: list[dict[str, Any]], started: float) -> dict[str, Any]:
    latencies = array("d")
    for r in replies:
        latencies.frombytes(r["latencies"])
    ordered = sorted(latencies)
    received = sum(r["received"] for r in replies)
    last = max(r["last_received"] for r in replies)
    closes: dict[str, int] = {}
    for r in replies:
        for code, n in r["closes"].items():
            closes[code] = closes.get(code, 0) + n
    return {
        "expected": sum(r["expected"] for r in replies),
        "received": received,
        "lost": sum(r["lost"] for r in replies),
        "duplicates": sum(r["duplicates"] for r in replies),
        "reordered": sum(r["reordered"] for r in replies),
        "closes": closes,
        "seconds": max(0.0, last - started),
        "deliveries_per_s": received / (last - started) if last > started else 0.0,
        "latency_ms": {
            "p50": quantile(ordered, 0.50),
            "p90": quantile(ordered, 0.90),
            "p99": quantile(ordered, 0.99),
            "max": ordered[-1] if ordered else float("nan"),
            "mean": statistics.fmean(ordered) if ordered else float("nan"),
        },
        # The distribution, for the plot: the latency at every half percent.
        "latency_cdf_ms": [quantile(ordered, q / 200) for q in range(201)] if ordered else [],
    }


async def scenario(
    name: str,
    *,
    server: Server,
    gens: LoadGens,
    pub: Publisher,
    redis: RedisProcess,
    args: argparse.Namespace,
    rate: float | None,
    storm: bool = False,
) -> dict[str, Any]:
    base = (await pub.bus.sync(CHANNEL)).seq
    count = args.messages
    await gens.call(("expect", base, count))
    cpu = (
        server.cpu(),
        cpu_seconds(redis.proc.pid if redis.proc else 0),
        gens.cpu(),
        server.proxy_cpu(),
    )
    publishing = asyncio.create_task(publish_paced(pub, count, rate))
    storm_result: dict[str, Any] | None = None
    if storm:
        await asyncio.sleep(count / (rate or 1) / 3)  # a third of the way in
        replies = await gens.call(("storm", args.timeout))
        steps = array("d")
        for r in replies:
            steps.frombytes(r["steps"])
        storm_result = {
            "clients": sum(r["clients"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "resumed": sum(r["resumed"] for r in replies),
            "snapshots": sum(r["snapshots"] for r in replies),
            "all_resumed_after_s": max(r["all_resumed_after"] for r in replies),
            "steps_s": storm_steps(steps),
        }
    started = await publishing
    published = time.time()
    replies = await gens.call(("wait", args.timeout))
    result = summarize(replies, started)
    server_cpu = server.cpu() - cpu[0]
    result |= {
        "scenario": name,
        "server": server.kind,
        "rate": rate,
        "messages": count,
        "publish_s": published - started,
        "cpu_s": {
            "server": server_cpu,
            "redis": cpu_seconds(redis.proc.pid if redis.proc else 0) - cpu[1],
            "loadgen": gens.cpu() - cpu[2],
        }
        | ({"proxy": server.proxy_cpu() - cpu[3]} if server.proxy else {}),
        "server_us_per_delivery": server_cpu / result["received"] * 1e6
        if result["received"]
        else float("nan"),
        "server_memory": server.memory(),
    }
    if storm_result is not None:
        result["storm"] = storm_result
    return result


async def idle(redis: RedisProcess, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Server memory for `--idle` connections, subscribed and quiet (summed over workers)."""
    server = start_server("feed", redis.url, workdir, args)
    gens = LoadGens.start(
        args.loadgens, server.url, args.rooms, args.idle, connects_at_once=args.connects_at_once
    )
    try:
        await asyncio.sleep(1.0)
        before = server.memory()["rss"]
        opened = await gens.connect(args.idle, args.timeout)
        await asyncio.sleep(2.0)  # let the last handshakes' garbage go
        after = server.memory()["rss"]
        return {
            "scenario": "idle",
            "server": "feed",
            "workers": args.workers,
            "clients": opened["clients"],
            "failed": opened["failed"],
            "connect_s": opened["seconds"],
            "rss_before": before,
            "rss_after": after,
            "bytes_per_connection": (after - before) / max(1, opened["clients"]),
        }
    finally:
        gens.stop()
        server.stop()


def nginx_workers(clients: int) -> int:
    """nginx worker processes enough for `clients` websockets (two files each) within this
    process's open-file limit, which nginx's `worker_rlimit_nofile` cannot exceed; at least the
    compose file's `auto` (one per core)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = hard if hard != resource.RLIM_INFINITY else 1 << 20
    usable = int(files * 0.8)  # each worker gets an uneven share, and keeps some for itself
    return max(os.cpu_count() or 1, -(-2 * clients // usable))


async def proxied(
    clients: int, *, redis: RedisProcess, pub: Publisher, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The rate scenario through the compose topology: nginx (its configuration as the compose
    file mounts it, with loopback addresses) in front of two `feed serve`, one process each."""
    binary = proxy.find_nginx()
    if binary is None:
        raise proxy.ProxyError("--proxy needs nginx (/usr/sbin/nginx, or NGINX=/path/to/nginx)")
    doc = proxy.compose()
    names = proxy.feed_services(doc)[:2]
    feeds = [start_server("feed", redis.url, workdir, args, workers=1) for _ in names]
    entry = proxy.Nginx(free_port(), workdir / f"nginx-{clients}")
    site = proxy.loopback_config(
        proxy.nginx_config(doc, proxy.NGINX_SITE),
        {name: feed.port for name, feed in zip(names, feeds, strict=True)},
        entry.port,
        reuseport=True,  # every worker its own accept queue: even shares of the files
    )
    workers = nginx_workers(clients)
    try:
        with proxy.run_nginx(
            binary, proxy.nginx_config(doc, proxy.NGINX_MAIN), site, entry.folder, workers=workers
        ) as nginx:
            await asyncio.to_thread(proxy.wait_answering, entry, nginx)
            server = Server(
                "feed", [p for f in feeds for p in f.procs], entry.port, feeds[0].log, [nginx]
            )
            gens = LoadGens.start(
                args.loadgens,
                server.url,
                args.rooms,
                clients,
                per_source=CONNECTIONS_PER_SOURCE_PROXIED,
                connects_at_once=args.connects_at_once,
            )
            try:
                opened = await gens.connect(clients, args.timeout)
                say(
                    f"feed through nginx ({workers} workers): {opened['clients']} clients"
                    f" connected in {opened['seconds']:.1f} s ({opened['failed']} failed)"
                )
                result = await scenario(
                    "rate-proxy",
                    server=server,
                    gens=gens,
                    pub=pub,
                    redis=redis,
                    args=args,
                    rate=args.rate,
                )
            finally:
                gens.stop()
            result |= {
                "clients": opened["clients"],
                "connect_s": opened["seconds"],
                "proxy_workers": workers,
                "feed_servers": len(feeds),
            }
            return result
    finally:
        for feed in feeds:
            feed.stop()


def proxy_cost(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the proxy costs: the proxied rate scenario beside the direct one at the same N."""
    via = next((r for r in runs if r["scenario"] == "rate-proxy"), None)
    if via is None:
        return {}
    direct = next(
        (
            r
            for r in runs
            if (r["server"], r["scenario"], r["clients"]) == ("feed", "rate", via["clients"])
        ),
        None,
    )
    out: dict[str, Any] = {
        "clients": via["clients"],
        "p99_ms": via["latency_ms"]["p99"],
        "cpu_s": {"feed": via["cpu_s"]["server"], "nginx": via["cpu_s"].get("proxy", 0.0)},
    }
    if direct is not None:
        out["direct_p99_ms"] = direct["latency_ms"]["p99"]
        out["direct_cpu_s"] = direct["cpu_s"]["server"]
        out["p99_added_ms"] = via["latency_ms"]["p99"] - direct["latency_ms"]["p99"]
        out["cpu_added_s"] = (
            via["cpu_s"]["server"] + via["cpu_s"].get("proxy", 0.0) - direct["cpu_s"]["server"]
        )
    return out


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    counts = parse_counts(args.clients)
    redis = RedisProcess(workdir / "redis", port=free_port())
    redis.start()
    runs: list[dict[str, Any]] = []
    try:
        async with Publisher(redis.url) as pub:
            for kind in ("feed", "naive") if args.baseline else ("feed",):
                for n in counts:
                    server = start_server(kind, redis.url, workdir, args)
                    gens = LoadGens.start(
                        args.loadgens,
                        server.url,
                        args.rooms,
                        n,
                        connects_at_once=args.connects_at_once,
                    )
                    try:
                        opened = await gens.connect(n, args.timeout)
                        say(
                            f"{kind}: {opened['clients']} clients connected in"
                            f" {opened['seconds']:.1f} s ({opened['failed']} failed)"
                        )
                        for name, rate, storm in (
                            ("burst", None, False),
                            ("rate", args.rate, False),
                            ("storm", args.rate, True),
                        ):
                            if storm and not (args.storm and kind == "feed" and n == counts[-1]):
                                continue
                            result = await scenario(
                                name,
                                server=server,
                                gens=gens,
                                pub=pub,
                                redis=redis,
                                args=args,
                                rate=rate,
                                storm=storm,
                            )
                            result["clients"] = opened["clients"]
                            result["connect_s"] = opened["seconds"]
                            say(line(result))
                            runs.append(result)
                    finally:
                        gens.stop()
                        server.stop()
            if args.proxy:
                result = await proxied(counts[-1], redis=redis, pub=pub, workdir=workdir, args=args)
                say(line(result))
                runs.append(result)
            if args.idle:
                result = await idle(redis, workdir, args)
                say(line(result))
                runs.append(result)
    finally:
        redis.stop()
    return {
        "machine": machine(),
        "options": options(args),
        "runs": runs,
        "ratios": ratios(runs),
        "proxy": proxy_cost(runs),
    }


def parse_counts(value: str) -> list[int]:
    try:
        counts = sorted({int(c) for c in value.split(",") if c.strip()})
    except ValueError:
        raise InvalidMessage(f"--clients takes whole numbers, not {value!r}") from None
    if not counts or counts[0] < 1:
        raise InvalidMessage("--clients takes positive numbers")
    return counts


def ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The feed's figures divided by the baseline's, for each scenario and N both ran."""
    out: dict[str, Any] = {}
    for run in runs:
        if run["server"] != "feed" or run["scenario"] not in ("burst", "rate"):
            continue
        base = next(
            (
                r
                for r in runs
                if r["server"] == "naive"
                and r["scenario"] == run["scenario"]
                and r["clients"] == run["clients"]
            ),
            None,
        )
        if base is None:
            continue
        key = f"{run['scenario']}@{run['clients']}"
        out[key] = {
            "deliveries_per_s": _ratio(run["deliveries_per_s"], base["deliveries_per_s"]),
            "p99": _ratio(run["latency_ms"]["p99"], base["latency_ms"]["p99"]),
            "server_us_per_delivery": _ratio(
                run["server_us_per_delivery"], base["server_us_per_delivery"]
            ),
        }
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "processor": _cpu_model(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line_ in Path("/proc/cpuinfo").read_text().splitlines():
            if line_.startswith("model name"):
                return line_.split(":", 1)[1].strip()
    return platform.processor()


def options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("command", "json", "plot")
    }


def say(message: str) -> None:
    print(message, flush=True)


def line(r: dict[str, Any]) -> str:
    if r["scenario"] == "idle":
        return (
            f"feed idle: {r['clients']} connections, "
            f"{r['bytes_per_connection'] / 1024:.1f} KiB each "
            f"(RSS {r['rss_before'] / 2**20:.0f} -> {r['rss_after'] / 2**20:.0f} MiB)"
        )
    lat = r["latency_ms"]
    text_ = (
        f"{r['server']} {r['scenario']} N={r['clients']}: "
        f"{r['deliveries_per_s'] / 1000:,.0f}k deliveries/s, p50 {lat['p50']:.0f} ms, "
        f"p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms; "
        f"server {r['server_us_per_delivery']:.2f} us CPU/delivery, "
        f"peak {r['server_memory']['peak'] / 2**20:.0f} MiB; "
        f"published in {r['publish_s']:.2f} s; CPU s: server {r['cpu_s']['server']:.1f}, "
        f"Redis {r['cpu_s']['redis']:.1f}, load generators {r['cpu_s']['loadgen']:.1f}; "
        f"lost {r['lost']}, dup {r['duplicates']}, reordered {r['reordered']}"
    )
    if "proxy" in r["cpu_s"]:
        text_ += f"; nginx CPU s {r['cpu_s']['proxy']:.1f} ({r['proxy_workers']} workers)"
    if r["closes"]:
        text_ += f"; closes {r['closes']}"
    if "storm" in r:
        s = r["storm"]
        text_ += (
            f"; storm: {s['resumed']} resumed, {s['snapshots']} snapshots, "
            f"{s['failed']} failed, all back in {s['all_resumed_after_s']:.2f} s"
        )
        steps = s.get("steps_s") or {}
        text_ += "; per client p50/p99/max s: " + ", ".join(
            f"{name} {v['p50']:.2f}/{v['p99']:.2f}/{v['max']:.2f}" for name, v in steps.items()
        )
    return text_


def report(results: dict[str, Any]) -> None:
    for key, r in results["ratios"].items():
        say(
            f"feed / naive, {key}: deliveries/s x{r['deliveries_per_s']:.2f}, "
            f"p99 x{r['p99']:.2f}, CPU per delivery x{r['server_us_per_delivery']:.2f}"
        )
    cost = results.get("proxy") or {}
    if "p99_added_ms" in cost:
        say(
            f"through nginx, N={cost['clients']}: p99 {cost['p99_ms']:.0f} ms"
            f" (direct {cost['direct_p99_ms']:.0f} ms, {cost['p99_added_ms']:+.0f} ms);"
            f" CPU s feed {cost['cpu_s']['feed']:.1f} + nginx {cost['cpu_s']['nginx']:.1f}"
            f" (direct {cost['direct_cpu_s']:.1f}, {cost['cpu_added_s']:+.1f})"
        )


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; exit 1 if any message was lost, duplicated or reordered."""
    parse_counts(args.clients)
    if args.replot is not None:
        if args.plot is None:
            raise InvalidMessage("--replot needs --plot FILE.png to draw to")
        from feed.bench import plot  # noqa: PLC0415

        plot.draw(orjson.loads(args.replot.read_bytes()), args.plot)
        say(f"plot written to {args.plot}")
        return 0
    if not Path("/proc/self/stat").exists():
        raise InvalidMessage("feed bench reads CPU and memory from /proc: it runs on Linux")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401, PLC0415
        except ImportError:
            raise InvalidMessage(
                "--plot needs matplotlib: pip install 'live-session-feed[bench]'"
            ) from None
    with tempfile.TemporaryDirectory(prefix="feed-bench-") as tmp:
        results = asyncio.run(measure(args, Path(tmp)))
    report(results)
    if args.plot is not None:
        from feed.bench import plot  # noqa: PLC0415 - matplotlib only when asked

        plot.draw(results, args.plot)
        say(f"plot written to {args.plot}")
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
        say(f"figures written to {args.json}")
    bad = [
        r
        for r in results["runs"]
        if r["scenario"] != "idle"
        and r["server"] == "feed"
        and (r["lost"] or r["duplicates"] or r["reordered"])
    ]
    return 1 if bad else 0
