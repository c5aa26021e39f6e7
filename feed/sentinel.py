"""Sentinel URLs: `redis+sentinel://[:password@]host:port[,host:port...]/SERVICE[/DB]`.

Redis Sentinel names no single server: it names the sentinels to ask, and the service (the
`sentinel monitor` name) whose current primary they know. redis-py has no URL form for it, so
this module reads ours into plain values; `feed.bus` builds the client from them. Nothing here
talks to Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from feed.errors import ConfigError

SCHEME = "redis+sentinel://"
DEFAULT_PORT = 26379  # Sentinel's own port, when a host names none
FORM = "redis+sentinel://[:password@]host:port[,host:port...]/SERVICE[/DB]"

# A service is a `sentinel monitor` name: Sentinel takes any word, we take the usual ones.
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HOST = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>\d+))?$")


@dataclass(frozen=True, slots=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    # The Redis servers' password (primary and replicas), never the sentinels': sentinels on a
    # private network usually have none, and one password for both is the common setup.
    username: str | None = None
    password: str | None = None


def is_sentinel(url: str) -> bool:
    return url[: len(SCHEME)].lower() == SCHEME


def parse(url: str) -> SentinelURL:
    """The parts of a Sentinel URL, or ConfigError saying what is wrong (without the
    password: the message never quotes the URL)."""
    if not is_sentinel(url):
        raise ConfigError(f"a Sentinel URL starts with {SCHEME}")
    rest = url[len(SCHEME) :]
    if "?" in rest or "#" in rest:
        raise ConfigError(f"a Sentinel URL takes no query or fragment: use {FORM}")
    userinfo, at, rest = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if password is None and username is not None:
            # `name@host` would send the name as a password: say how to write it instead.
            raise ConfigError(f"a Sentinel URL's password comes after a colon: {FORM}")
    hosts, slash, path = rest.partition("/")
    if not slash or not path:
        raise ConfigError(f"a Sentinel URL names the service after the hosts: {FORM}")
    sentinels = tuple(_address(part) for part in hosts.split(","))
    service, slash, db_text = path.partition("/")
    if not _SERVICE.match(service):
        raise ConfigError(
            f"a Sentinel service is a name of letters, digits, '.', '_' or '-': {FORM}"
        )
    db = 0
    if slash:
        if not db_text.isascii() or not db_text.isdigit() or len(db_text) > 5:
            raise ConfigError(f"a Sentinel URL's database is a number: {FORM}")
        db = int(db_text)
    return SentinelURL(sentinels, service, db, username, password)


def _address(text: str) -> tuple[str, int]:
    match = _HOST.match(text.strip())
    if match is None:
        raise ConfigError(f"a Sentinel URL lists its sentinels as host:port: {FORM}")
    port = int(match["port"]) if match["port"] else DEFAULT_PORT
    if not 0 < port < 65536:
        raise ConfigError(f"a sentinel's port is between 1 and 65535: {FORM}")
    return match["v6"] or match["name"], port
