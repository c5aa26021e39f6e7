"""docker-compose.sentinel.yml, read as Compose would merge it over docker-compose.yml (there is
no Docker here: tests/web/test_failover.py runs the same topology on loopback instead)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from feed.bus import check_url
from feed.sentinel import parse
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
SENTINEL_COMPOSE = ROOT / "docker-compose.sentinel.yml"
DATA_NODES = ("redis", "redis-replica1", "redis-replica2")
SENTINELS = ("sentinel1", "sentinel2", "sentinel3")


def merged() -> dict[str, Any]:
    """The override merged over the main file as Compose does for these keys: a service's
    mappings (environment, depends_on) merge, anything else is replaced."""
    yaml = pytest.importorskip("yaml")
    base: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    extra: dict[str, Any] = yaml.safe_load(SENTINEL_COMPOSE.read_text())
    services = {name: dict(service) for name, service in base["services"].items()}
    for name, service in extra["services"].items():
        into = services.setdefault(name, {})
        for key, value in service.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                into[key] = {**into[key], **value}
            else:
                into[key] = value
    tops = {k: {**(base.get(k) or {}), **(extra.get(k) or {})} for k in ("configs", "volumes")}
    return {**base, **extra, **tops, "services": services}


def depends_on(service: dict[str, Any]) -> dict[str, Any]:
    """`depends_on` in either form (a list of names, or names with conditions)."""
    value = service.get("depends_on", {})
    return {name: {} for name in value} if isinstance(value, list) else dict(value)


def options(command: list[str]) -> dict[str, list[str]]:
    """`redis-server --name value...` as {name: [values]}."""
    found: dict[str, list[str]] = {}
    name = None
    for word in command[1:]:
        if word.startswith("--"):
            name = word[2:]
            found[name] = []
        elif name is not None:
            found[name].append(word)
    return found


def sentinel_conf(doc: dict[str, Any]) -> dict[str, list[str]]:
    text = doc["configs"]["sentinel"]["content"]
    conf: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split()
        if words:
            key = " ".join(words[:2]) if words[0] == "sentinel" else words[0]
            conf[key] = words[2:] if words[0] == "sentinel" else words[1:]
    return conf


def test_every_data_node_persists_and_may_become_primary() -> None:
    doc = merged()
    services = doc["services"]
    for name in DATA_NODES:
        opts = options(services[name]["command"])
        assert opts["appendonly"] == ["yes"] and opts["appendfsync"] == ["everysec"]
        assert opts["maxmemory-policy"] == ["noeviction"]
        # Its own name is what Sentinel hands to clients once it is primary.
        assert opts["replica-announce-ip"] == [name]
        # Cut off from every replica, it stops taking writes a failover would drop.
        assert opts["min-replicas-to-write"] == ["1"]
        assert 0 < int(opts["min-replicas-max-lag"][0]) <= 10
        assert services[name]["healthcheck"]["test"][-1] == "ping"
    for name in DATA_NODES[1:]:
        assert options(services[name]["command"])["replicaof"] == ["redis", "6379"]
        assert any(v.endswith(":/data") for v in services[name]["volumes"])
        assert depends_on(services[name])["redis"]["condition"] == "service_healthy"


def test_three_sentinels_watch_the_primary_with_a_quorum_of_two() -> None:
    doc = merged()
    services = doc["services"]
    conf = sentinel_conf(doc)
    assert conf["sentinel monitor"] == ["feed", "redis", "6379", "2"]
    assert conf["sentinel resolve-hostnames"] == ["yes"]
    assert conf["sentinel announce-hostnames"] == ["yes"]
    assert conf["port"] == ["26379"]
    assert int(conf["sentinel down-after-milliseconds"][1]) <= 5000
    for name in SENTINELS:
        sentinel = services[name]
        assert sentinel["hostname"] == name
        script = sentinel["command"][-1]
        # Sentinel rewrites its file: it runs from a copy, in sentinel mode.
        assert "/data/sentinel.conf" in script and "--sentinel" in script
        assert "announce-ip $$(hostname)" in script  # `$$`: Compose leaves one `$` to sh
        assert not re.search(r"(?<!\$)\$(?!\$)", script.replace("$$", ""))
        assert sentinel["configs"][0]["source"] == "sentinel"
        assert "26379" in sentinel["healthcheck"]["test"]


def test_the_feed_servers_find_the_primary_through_every_sentinel() -> None:
    doc = merged()
    services = doc["services"]
    feeds = [name for name in services if name.startswith("feed")]
    assert len(feeds) >= 2
    for name in feeds:
        env = services[name]["environment"]
        url = env["FEED_REDIS_URL"]
        assert check_url(url) == url
        parts = parse(url)
        assert parts.service == "feed"
        assert sorted(parts.sentinels) == [(s, 26379) for s in SENTINELS]
        # Each publish waits for one replica; with two, one may be down for maintenance.
        assert 1 <= int(env["FEED_REDIS_MIN_REPLICAS"]) <= len(DATA_NODES) - 2
        assert env["FEED_MAX_CONNECTIONS_PER_IP"] == "0"  # kept from the main file
        needs = depends_on(services[name])
        for sentinel in SENTINELS:
            assert needs[sentinel]["condition"] == "service_healthy"
    for service in services.values():
        for needed in depends_on(service):
            assert needed in services


def test_the_named_volumes_are_declared() -> None:
    doc = merged()
    yaml_volumes = set(doc.get("volumes") or {})
    for service in doc["services"].values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if not source.startswith(("/", ".")):
                assert source in yaml_volumes
