"""The deployment (`docker-compose.yml`, `Dockerfile`), proven without Docker.

There is no Docker on the development machines. So the compose file's structure is checked here,
and its topology is run for real on loopback: a Redis, two `feed serve` processes, and Debian's
nginx with the very configuration text the compose file mounts into its nginx container. Only
what must differ outside Docker is rewritten: the upstream servers' addresses, the listening
port, and the paths of an unprivileged nginx (feed/bench/proxy.py, shared with `feed bench
--proxy`). That test is skipped where there is no nginx (`apt-get install nginx`;
`NGINX=/path/to/nginx` names another binary).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from feed.bench import proxy
from feed.bench.proxy import (
    COMPOSE,
    DOCKERFILE,
    FEED_PORT,
    NGINX_MAIN,
    NGINX_SITE,
    Nginx,
    feed_services,
    find_nginx,
    loopback_config,
    nginx_config,
    nginx_config_raw,
    nginx_service,
    run_nginx,
    wait_answering,
)
from feed.embedded import RedisProcess, free_port
from publisher import Publisher
from tests.conftest import Client, FeedServer, connect, get

Servers = Callable[..., FeedServer]

DOCKERIGNORE = COMPOSE.parent / ".dockerignore"
HEARTBEAT = 25  # seconds between the server's websocket pings (docs/protocol.md, Connecting)
CLIENTS = 6


# --- reading the compose file, its nginx configuration and the Dockerfile ---------------------


def compose() -> dict[str, Any]:
    pytest.importorskip("yaml")
    return proxy.compose()


def directives(conf: str, name: str) -> list[str]:
    """The arguments of every `name ...;` directive in `conf`, comments left out."""
    text = re.sub(r"#[^\n]*", "", conf)
    return [m.group(1).strip() for m in re.finditer(rf"(?m)^\s*{name}\s+([^;{{]*)[;{{]", text)]


def blocks(conf: str, head: str) -> dict[str, str]:
    """The bodies of the (innermost) `head ARGS { ... }` blocks, keyed by ARGS."""
    text = re.sub(r"#[^\n]*", "", conf)
    return {
        m.group(1).strip(): m.group(2)
        for m in re.finditer(rf"(?m)^\s*{head}\s+([^{{;]*)\{{([^{{}}]*)\}}", text)
    }


def upstream_servers(conf: str) -> list[str]:
    (body,) = blocks(conf, "upstream").values()
    return [args.split()[0] for args in directives(body, "server")]


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    assert m, f"not an nginx time: {value!r}"
    return int(m.group(1)) * units[m.group(2) or "s"]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction, continuation lines joined."""
    text = re.sub(r"(?m)^\s*#.*\n", "", DOCKERFILE.read_text())
    text = re.sub(r"\\\n", " ", text)
    found = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


def depends_on(service: dict[str, Any]) -> dict[str, Any]:
    """`depends_on` in either form (a list of names, or names with conditions)."""
    value = service.get("depends_on", {})
    return {name: {} for name in value} if isinstance(value, list) else dict(value)


# --- the structure, everywhere -----------------------------------------------------------------


def test_the_compose_file_has_redis_two_feed_servers_and_nginx_in_front() -> None:
    doc = compose()
    services: dict[str, Any] = doc["services"]
    assert "redis" in services

    redis = services["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command  # an evicted key would be a silent loss
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    assert set(doc["volumes"]) >= {v.split(":")[0] for v in redis["volumes"]}

    feeds = feed_services(doc)
    assert len(feeds) >= 2, "two feed servers at least, built from the Dockerfile"
    for name in feeds:
        feed = services[name]
        assert feed["build"]["context"] == "."
        assert "/healthz" in " ".join(feed["healthcheck"]["test"])
        env = feed["environment"]
        url = urlsplit(env["FEED_REDIS_URL"])
        assert (url.scheme, url.hostname, url.port) == ("redis", "redis", 6379)
        # Behind nginx every client shares nginx's address: the limit is nginx's (limit_conn).
        assert str(env["FEED_MAX_CONNECTIONS_PER_IP"]) == "0"
        assert depends_on(feed)["redis"] == {"condition": "service_healthy"}
        assert feed["stop_signal"] == "SIGTERM"
        assert seconds(feed["stop_grace_period"]) > 5  # the server gives requests 5 s
        assert "ports" not in feed, "clients come in through nginx only"

    nginx = nginx_service(doc)
    assert nginx["image"] == "nginx:1.28-alpine"
    assert "8080:80" in nginx["ports"]
    assert set(depends_on(nginx)) >= set(feeds)
    assert nginx_config_raw(doc, NGINX_SITE).strip()
    assert nginx_config_raw(doc, NGINX_MAIN).strip()

    for name, service in services.items():
        for other in depends_on(service):
            assert other in services, f"{name} depends on {other}, which is not a service"


def test_the_nginx_configuration_passes_websockets_and_spreads_over_every_feed_server() -> None:
    doc = compose()
    # Compose substitutes $NAME in the text: every dollar of nginx's must be written $$.
    for target in (NGINX_SITE, NGINX_MAIN):
        raw = nginx_config_raw(doc, target)
        assert "$" not in raw.replace("$$", ""), f"{target}: write nginx variables as $$name"
    conf = nginx_config(doc)

    assert sorted(upstream_servers(conf)) == sorted(f"{n}:{FEED_PORT}" for n in feed_services(doc))
    (upstream,) = blocks(conf, "upstream").values()
    assert not directives(upstream, "ip_hash"), "any server resumes any client: no stickiness"
    assert directives(conf, "listen") == ["80"]
    assert set(directives(conf, "proxy_pass")) == {"http://feed"}

    assert directives(conf, "proxy_http_version") == ["1.1"]
    assert "$http_upgrade $connection_upgrade" in directives(conf, "map")
    headers = dict(h.split(None, 1) for h in directives(conf, "proxy_set_header"))
    assert headers == {
        "Upgrade": "$http_upgrade",
        "Connection": "$connection_upgrade",
        "Host": "$http_host",  # with the port, which the server's Origin check compares
        "X-Real-IP": "$remote_addr",
        "X-Forwarded-For": "$proxy_add_x_forwarded_for",
        "X-Forwarded-Proto": "$scheme",
    }
    # A location that sets any header of its own would drop all of the server's.
    for where, body in blocks(conf, "location").items():
        assert not directives(body, "proxy_set_header"), f"location {where} drops the headers"
    (read_timeout,) = directives(conf, "proxy_read_timeout")
    assert seconds(read_timeout) > HEARTBEAT
    (next_upstream,) = directives(conf, "proxy_next_upstream")
    assert {"error", "timeout"} <= set(next_upstream.split())
    (zone,) = directives(conf, "limit_conn_zone")
    assert zone.startswith("$binary_remote_addr ")
    assert directives(conf, "limit_conn")
    assert directives(blocks(conf, "location")["= /sse"], "proxy_buffering") == ["off"]
    assert directives(blocks(conf, "location")["= /metrics"], "deny") == ["all"]
    (body_size,) = directives(conf, "client_max_body_size")
    assert body_size == "33m"  # POST /api/schedule takes files up to 32 MiB


def test_nginx_has_room_for_thousands_of_websockets() -> None:
    doc = compose()
    main = nginx_config(doc, NGINX_MAIN)
    (http,) = blocks(main, "http").values()
    assert directives(http, "include") == ["/etc/nginx/conf.d/*.conf"]
    assert not directives(main, "daemon"), "the image's command sets it: twice stops nginx"
    # A reload or a stop does not wait forever for the websockets of the old workers.
    assert seconds(directives(main, "worker_shutdown_timeout")[0]) <= 15
    (events,) = blocks(main, "events").values()
    (connections,) = directives(events, "worker_connections")
    (files,) = directives(main, "worker_rlimit_nofile")
    # Each websocket holds two connections (the client's, the feed server's) and two files.
    assert int(connections) // 2 >= 4000
    assert int(files) >= 2 * int(connections)
    assert nginx_service(doc)["ulimits"]["nofile"]["hard"] >= int(files)
    for name in feed_services(doc):
        assert doc["services"][name]["ulimits"]["nofile"]["soft"] >= 10_000


def test_the_dockerfile_is_slim_non_root_and_checks_its_health() -> None:
    instructions = dockerfile()
    arguments: dict[str, list[str]] = {}
    for word, args in instructions:
        arguments.setdefault(word, []).append(args)
    assert arguments["FROM"] == ["python:3.11-slim"]
    # The locked versions, hashes checked, then the package alone: the image gets what CI tested.
    assert any("--require-hashes -r requirements.txt" in run for run in arguments["RUN"])
    assert any("--no-deps --no-build-isolation ." in run for run in arguments["RUN"])
    user = arguments["USER"][-1]
    assert user.split(":")[0] not in {"root", "0"}
    last_user = max(i for i, (word, _) in enumerate(instructions) if word == "USER")
    assert all(word != "RUN" for word, _ in instructions[last_user:]), "nothing runs as root after"
    assert arguments["EXPOSE"] == ["8080"]
    (healthcheck,) = arguments["HEALTHCHECK"]
    assert "http://127.0.0.1:8080/healthz" in healthcheck and "urllib" in healthcheck
    assert arguments["STOPSIGNAL"] == ["SIGTERM"]
    assert arguments["CMD"] == ['["feed", "serve", "--host", "0.0.0.0", "--port", "8080"]']

    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".git", ".venv", "var", "tests", "docs"} <= ignored


# --- the topology, on loopback with a real nginx -----------------------------------------------


def established(port: int) -> int:
    """TCP connections established to local port `port` (Linux's /proc/net/tcp): here, the
    connections nginx holds open to the feed server on that port."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


async def connect_counted(
    nginx: Nginx, servers: list[FeedServer], stack: contextlib.AsyncExitStack
) -> tuple[Client, FeedServer]:
    """A websocket through nginx, and the feed server nginx handed it to."""
    before = {s.port: established(s.port) for s in servers}
    client = await stack.enter_async_context(connect(nginx.ws_url))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        grew = [s for s in servers if established(s.port) > before[s.port]]
        if len(grew) == 1:
            return client, grew[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"cannot tell which server took the connection: {before}")


def delays(events: list[dict[str, Any]]) -> list[int]:
    return [e["data"]["delay"] for e in events]


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Topology:
    """The compose file's topology on loopback: nginx in front of two feed servers on a Redis."""

    redis_url: str
    servers: list[FeedServer]
    nginx: Nginx


@pytest.fixture
def topology(
    request: pytest.FixtureRequest, feed_server: Servers, tmp_path: Path
) -> Iterator[Topology]:
    binary = find_nginx()
    if binary is None:
        pytest.skip("no nginx binary (/usr/sbin/nginx): apt-get install nginx")
    if not Path("/proc/net/tcp").exists():
        pytest.skip("telling which server holds a connection needs Linux's /proc/net/tcp")
    doc = compose()
    redis: RedisProcess = request.getfixturevalue("redis")  # only once nothing can skip
    names = feed_services(doc)[:2]
    # The feed services' own settings, but the test's Redis (the fixture passes its URL).
    env = {k: str(v) for k, v in doc["services"][names[0]]["environment"].items()}
    env.pop("FEED_REDIS_URL")
    servers = [feed_server(redis.url, env=env) for _ in names]
    nginx = Nginx(free_port(), tmp_path / "nginx")
    upstreams = {name: server.port for name, server in zip(names, servers, strict=True)}
    site = loopback_config(nginx_config(doc, NGINX_SITE), upstreams, nginx.port)
    with run_nginx(binary, nginx_config(doc, NGINX_MAIN), site, nginx.folder) as proc:
        wait_answering(nginx, proc)
        yield Topology(redis.url, servers, nginx)


async def test_through_nginx_clients_on_both_servers_get_every_event_and_survive_a_killed_server(
    topology: Topology,
) -> None:
    nginx, servers = topology.nginx, topology.servers
    a, b = servers
    async with Publisher(topology.redis_url) as pub, contextlib.AsyncExitStack() as stack:
        await pub.status("atlas", "delayed", delay=0)

        # Clients through nginx, spread over both servers (least_conn).
        placed = [await connect_counted(nginx, servers, stack) for _ in range(CLIENTS)]
        on = {s.port: [c for c, where in placed if where is s] for s in servers}
        counts = {port: len(clients) for port, clients in on.items()}
        assert list(counts.values()) == [CLIENTS // 2] * 2, f"not spread evenly: {counts}"
        for client, _ in placed:
            got = await client.subscribe(["room:atlas"])
            assert got[-1]["seq"] == 1 and got[-1]["resumed"] is False
        epoch = got[-1]["epoch"]

        # Published beside the servers, on Redis: every client gets every event, in order.
        for delay in (1, 2, 3):
            await pub.status("atlas", "delayed", delay=delay)
        for client, _ in placed:
            events = await client.events(3)
            assert [(e["epoch"], e["seq"]) for e in events] == [(epoch, 2), (epoch, 3), (epoch, 4)]
            assert delays(events) == [1, 2, 3]

        # A server dies with no goodbye: nginx drops its clients; the others stay.
        assert a.proc is not None
        a.proc.kill()
        a.proc.wait()
        for client in on[a.port]:
            with pytest.raises(ConnectionClosed):
                await client.recv(timeout=5)
        for delay in (4, 5):
            await pub.status("atlas", "delayed", delay=delay)
        for client in on[b.port]:
            events = await client.events(2)
            assert [e["seq"] for e in events] == [5, 6] and delays(events) == [4, 5]

        # They come back through nginx, which skips the dead server, and resume on the other
        # with their last position: exactly what they missed, no snapshot.
        since = {"room:atlas": {"epoch": epoch, "seq": 4}}
        for _ in on[a.port]:
            client, where = await connect_counted(nginx, servers, stack)
            assert where is b
            got = await client.subscribe(["room:atlas"], since=since)
            assert [m["type"] for m in got] == ["event", "event", "subscribed"]
            assert [m["seq"] for m in got] == [5, 6, 6] and delays(got[:2]) == [4, 5]
            assert got[-1]["resumed"] is True and got[-1]["epoch"] == epoch
            on[b.port].append(client)
        # Every client on the one server left (a connection of an earlier request may still be
        # closing: wait for the count rather than read it once).
        deadline = time.monotonic() + 15
        while established(b.port) != CLIENTS:
            assert time.monotonic() < deadline, f"{established(b.port)} != {CLIENTS}"
            await asyncio.sleep(0.1)
        # nginx tried the dead server first (it had the fewest connections), then the other.
        refused = [line for line in nginx.error_log().splitlines() if "connect() failed" in line]
        assert refused and all(f"127.0.0.1:{a.port}/ws" in line for line in refused)

        await pub.status("atlas", "delayed", delay=6)
        for client in on[b.port]:
            (event,) = await client.events(1)
            assert event["seq"] == 7 and delays([event]) == [6]

        # Plain HTTP through nginx, with one server down: never an error.
        for _ in range(4):
            assert (await asyncio.to_thread(get, nginx.url + "/readyz"))[0] == 200
            assert (await asyncio.to_thread(get, nginx.url + "/healthz"))[0] == 200


async def test_through_nginx_pages_origins_big_programs_pass_and_metrics_do_not(
    topology: Topology,
) -> None:
    nginx = topology.nginx
    # The server's own pages may open websockets: nginx passes Host with its port, which the
    # server compares with the page's Origin. Other sites' pages may not.
    async with connect(nginx.ws_url, origin=f"http://127.0.0.1:{nginx.port}") as client:
        got = await client.subscribe(["venue"])
        assert got[-1]["type"] == "subscribed"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(nginx.ws_url, origin="http://elsewhere.example"):
            pass
    assert refused.value.response.status_code == 403

    # A program export over nginx's default 1 MiB body limit reaches the server, which refuses
    # it for want of a token (401), rather than nginx for its size (413).
    status = await asyncio.to_thread(post, nginx.url + "/api/schedule", b"x" * (2 << 20))
    assert status == 401

    # The servers' metrics are not for the venue's network.
    with pytest.raises(urllib.error.HTTPError) as denied:
        await asyncio.to_thread(urllib.request.urlopen, nginx.url + "/metrics", timeout=5)
    assert denied.value.code == 403
