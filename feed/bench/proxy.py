"""The compose file's nginx on loopback: the very configuration text `docker-compose.yml` mounts
into its nginx container, run by Debian's nginx in front of feed servers on this machine.

There is no Docker on the development machines, so both the deployment tests
(tests/web/test_deploy.py) and `feed bench --proxy` run the topology this way. Only what must
differ outside Docker is rewritten: the upstream servers' addresses, the listening address, and
the paths of an unprivileged nginx (pid, logs, temporary files). The bench may also ask for more
nginx worker processes (see `loopback_main`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feed.errors import InvalidMessage

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
NGINX_MAIN = "/etc/nginx/nginx.conf"
NGINX_SITE = "/etc/nginx/conf.d/default.conf"
FEED_PORT = 8080  # where the feed servers listen in their containers


class ProxyError(InvalidMessage):
    """The compose file's nginx cannot be run here: no nginx, no YAML reader, or a configuration
    that no longer has the lines the loopback rewrite changes."""


# --- reading the compose file and its nginx configuration --------------------------------------


def compose(path: Path = COMPOSE) -> dict[str, Any]:
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        raise ProxyError("reading docker-compose.yml needs PyYAML: pip install pyyaml") from None
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def nginx_service(doc: dict[str, Any]) -> dict[str, Any]:
    (service,) = [
        s for s in doc["services"].values() if str(s.get("image", "")).startswith("nginx:")
    ]
    return dict(service)


def feed_services(doc: dict[str, Any]) -> list[str]:
    """The services built from the repository's Dockerfile, in the file's order."""
    return [
        name
        for name, service in doc["services"].items()
        if isinstance(service.get("build"), dict)
        and service["build"].get("dockerfile") == DOCKERFILE.name
    ]


def nginx_config_raw(doc: dict[str, Any], target: str = NGINX_SITE) -> str:
    """The inline configuration text mounted in the nginx container at `target`, as written."""
    (mount,) = [m for m in nginx_service(doc)["configs"] if m["target"] == target]
    content: str = doc["configs"][mount["source"]]["content"]
    return content


def nginx_config(doc: dict[str, Any], target: str = NGINX_SITE) -> str:
    """That text as nginx gets it: Compose turns `$$` into `$`."""
    return nginx_config_raw(doc, target).replace("$$", "$")


# --- the same configuration, on loopback ------------------------------------------------------


def find_nginx() -> str | None:
    """`NGINX` when set, else Debian's (/usr/sbin is not on every PATH), else one on PATH."""
    named = os.environ.get("NGINX")
    candidates = [named] if named is not None else ["/usr/sbin/nginx", shutil.which("nginx")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@dataclass
class Nginx:
    port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _sub_once(pattern: str, replace: str | Callable[[re.Match[str]], str], text: str) -> str:
    text, n = re.subn(pattern, replace, text)
    if n != 1:
        raise ProxyError(f"the compose file's nginx configuration: {pattern} not found once")
    return text


def loopback_config(
    conf: str, upstreams: dict[str, int], port: int, *, reuseport: bool = False
) -> str:
    """The compose file's site configuration, with only the addresses changed for loopback.
    `reuseport` gives each nginx worker its own accept queue (the kernel spreads connections
    evenly), for runs with more workers than the compose file's."""
    for name, upstream_port in upstreams.items():
        conf = _sub_once(
            rf"(?m)^(\s*server\s+){re.escape(name)}:{FEED_PORT}\b",
            rf"\g<1>127.0.0.1:{upstream_port}",
            conf,
        )
    listen = f"127.0.0.1:{port}" + (" reuseport" if reuseport else "")
    return _sub_once(r"(?m)^(\s*listen\s+)80\s*;", rf"\g<1>{listen};", conf)


def loopback_main(main: str, folder: Path, *, workers: int | None = None) -> str:
    """The compose file's main nginx file, with the paths of an unprivileged nginx: what it
    writes (pid, logs, temporary files) goes to `folder`, and it includes `folder`/default.conf.
    `workers` replaces `worker_processes` (a process here may hold at most so many files, and
    each proxied websocket holds two)."""
    # As root, nginx's workers would run as `nobody`, who cannot enter private folders.
    user = "user root;" if os.geteuid() == 0 else ""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    http = [f"{kind}_temp_path {folder / kind};" for kind in kinds]
    http.append(f"include {folder / 'default.conf'};")
    rewrites: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"(?m)^([ \t]*)user\s+[^;]*;", lambda m: m[1] + user),
        (r"(?m)^([ \t]*)pid\s+[^;]*;", lambda m: f"{m[1]}pid {folder / 'nginx.pid'};"),
        (r"(?m)^([ \t]*)error_log\s+\S+", lambda m: f"{m[1]}error_log {folder / 'error.log'}"),
        (
            r"(?m)^([ \t]*)access_log\s+[^;]*;",
            lambda m: f"{m[1]}access_log {folder / 'access.log'};",
        ),
        (
            r"(?m)^([ \t]*)include\s+/etc/nginx/conf\.d/\*\.conf;",
            lambda m: m[1] + f"\n{m[1]}".join(http),
        ),
    ]
    if workers is not None:
        rewrites.append(
            (
                r"(?m)^([ \t]*)worker_processes\s+[^;]*;",
                lambda m: f"{m[1]}worker_processes {workers};",
            )
        )
    for pattern, rewrite in rewrites:
        main = _sub_once(pattern, rewrite, main)
    return main


@contextlib.contextmanager
def run_nginx(
    binary: str, main: str, site: str, folder: Path, *, workers: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """nginx in the foreground as the image runs it (`-g 'daemon off;'`), everything it writes
    in `folder`; always stopped."""
    folder.mkdir()
    (folder / "default.conf").write_text(site)
    (folder / "nginx.conf").write_text(loopback_main(main, folder, workers=workers))
    command = [binary, "-p", str(folder), "-c", str(folder / "nginx.conf")]
    command += ["-e", str(folder / "error.log"), "-g", "daemon off;"]
    check = subprocess.run(
        [*command, "-t"], capture_output=True, text=True, timeout=10, check=False
    )
    if check.returncode != 0:
        raise ProxyError(f"nginx refuses the configuration:\n{check.stderr}")
    with (folder / "stderr.log").open("wb") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        yield proc
    finally:
        proc.terminate()  # SIGTERM: a fast shutdown, open websockets included
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_answering(nginx: Nginx, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Until nginx answers /healthz (from a feed server) with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProxyError(f"nginx exited with {proc.returncode}:\n{nginx.error_log()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(nginx.url + "/healthz", timeout=0.5) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.05)
    raise ProxyError(f"nginx not answering in {timeout} s:\n{nginx.error_log()}")
