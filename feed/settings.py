"""Settings: one typed object, built at the entry point and passed down explicitly.

Precedence, highest first: command-line flags, `FEED_*` environment variables, the TOML file named
by `--config` or `FEED_CONFIG`, then the defaults below.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feed import zones
from feed.bus import check_url
from feed.errors import ConfigError, InvalidMessage
from feed.program import zone_info


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    # None: start (or share) the embedded Redis kept in `data_dir`. Also
    # redis+sentinel://[:password@]host:port[,host:port...]/SERVICE[/DB] (feed/sentinel.py).
    redis_url: str | None = None
    # Replicas that must confirm each publish (Redis WAIT, 1 s at most) before it counts as
    # done; else it is refused (HTTP 503, exit 1) and may be retried. None ("auto"): 1 with a
    # Sentinel URL, so that an acknowledged change survives a failover; 0 with one Redis, which
    # has no replica to wait for (docs/reliability.md).
    redis_min_replicas: int | None = None
    data_dir: Path = Path("var")
    # Events kept per channel in Redis for resuming clients. Publishers trim the history as they
    # append, so this is what `feed publish` and `Publisher` use; `feed serve` only reads it.
    history: int = 1000
    # A client that leaves more than this unread when more is to be sent is disconnected as
    # slow (close 4008); it reconnects and resumes.
    client_queue_bytes: int = 4 * 1024 * 1024
    log_level: str = "info"
    # The venue's IANA time zone (e.g. Africa/Casablanca); else the imported program's; else UTC.
    venue_zone: str | None = None
    # Where venue time comes from: "auto" (the newer of the system's tz files and the tzdata
    # wheel's), "system" or "wheel". See feed/zones.py and README's "Time zones".
    tzdata: str = "auto"
    # HTTP API requests per minute and token.
    api_rate: int = 120
    # Browser pages from other origins allowed to open websockets, comma-separated
    # ("https://app.example.org,https://other.example"), or "*"; none: the server's own pages.
    # Clients that send no Origin (screens' players, scripts, `feed watch`) are not concerned.
    allowed_origins: str | None = None
    # Origins whose pages may call the HTTP API (CORS), comma-separated, or "*"; none: no CORS.
    cors_origins: str | None = None
    # Channel subscriptions the server starts per second, all clients together (issue 18): past
    # it they wait their turn, and connected clients are served first.
    subscribe_rate: int = 10_000
    # Websocket connections at once from one address; 0 (the default): no per-address limit at
    # all. Off by default because a venue's phones often share one NAT address, which would turn
    # the crowd away after a wifi blip; the server protects itself by its own capacity (its file
    # limit, its accept queue, the subscription budget). How to size it: docs/operations.md.
    max_connections_per_ip: int = 0
    # Reverse proxies in front of the server (comma-separated addresses): for requests from
    # them, the client's address is taken from X-Forwarded-For, and the page's host from
    # X-Forwarded-Host. Anyone else's forwarding headers are ignored.
    trusted_proxies: str | None = None
    # Server processes sharing the port (SO_REUSEPORT), each with its own Redis subscription.
    workers: int = 1
    # Python's cyclic garbage collector: "tuned" (frozen start-up objects, rarer collections; see
    # docs/performance.md) or "default".
    gc: str = "tuned"
    # Log lines: "text" for people, "json" (one object per line) for collectors, or "auto":
    # text when writing to a terminal, JSON otherwise.
    log_format: str = "auto"
    # How much faster than real time the demo's clock runs (`feed demo`).
    demo_rate: int = 30


LOG_LEVELS = ("debug", "info", "warning", "error")
ZERO_ALLOWED = ("port", "max_connections_per_ip", "redis_min_replicas")
AUTO = "auto"  # spelled out for settings whose None is a computed default
GC_MODES = ("tuned", "default")
TZDATA_SOURCES = zones.SOURCES
LOG_FORMATS = ("auto", "text", "json")
_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _convert(name: str, value: Any, source: str) -> Any:
    kind = _FIELDS[name].type
    try:
        if kind == "int | None":
            if value is None or (isinstance(value, str) and value.strip().lower() in ("", AUTO)):
                return None
            kind = "int"
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError("expected a whole number")
            try:
                number = int(value)
            except ValueError:  # Python's "invalid literal for int() with base 10" says less
                raise ValueError("expected a whole number") from None
            if number < (0 if name in ZERO_ALLOWED else 1) or (name == "port" and number > 65535):
                raise ValueError(f"{number} is out of range")
            return number
        if kind == "Path":
            return Path(str(value))
        if kind == "str | None":
            if name == "venue_zone" and value not in (None, ""):
                zone_info(str(value))  # a zone that does not exist stops the start, not an import
            if name in ("allowed_origins", "cors_origins") and value not in (None, ""):
                origins(str(value))
            if name == "trusted_proxies" and value not in (None, ""):
                addresses(str(value))
            if name == "redis_url" and value not in (None, ""):
                check_url(str(value))
            return str(value) if value not in (None, "") else None
        choices = {
            "log_level": LOG_LEVELS,
            "gc": GC_MODES,
            "log_format": LOG_FORMATS,
            "tzdata": TZDATA_SOURCES,
        }.get(name)
        if choices is not None:
            if str(value).lower() not in choices:
                raise ValueError(f"expected one of {', '.join(choices)}")
            return str(value).lower()
        return str(value)
    except (InvalidMessage, ConfigError) as exc:  # what is wrong, without a value's secrets
        raise ConfigError(f"{source}: invalid value for {name}: {exc.message}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: invalid value {value!r} for {name}: {exc}") from None


def origins(value: str | None) -> frozenset[str]:
    """A comma-separated list of origins (`scheme://host[:port]`, or `*` for any), checked."""
    found = frozenset(o.strip().rstrip("/").lower() for o in (value or "").split(",") if o.strip())
    for origin in found - {"*"}:
        scheme, sep, host = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not host or "/" in host:
            raise ValueError(f"{origin!r} is not an origin like https://screens.example.org")
    return found


def addresses(value: str | None) -> frozenset[str]:
    """A comma-separated list of IP addresses, checked."""
    found = frozenset(a.strip() for a in (value or "").split(",") if a.strip())
    for address in found:
        ipaddress.ip_address(address)  # ValueError names it
    return found


def load(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Build the settings from flags (None values mean "not given"), environment and file."""
    return load_with_sources(flags, environ, config_file)[0]


def load_with_sources(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> tuple[Settings, dict[str, str]]:
    """The settings, and where each came from: a flag, a variable, the file, or the default."""
    environ = os.environ if environ is None else environ
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    values: dict[str, Any] = {}
    sources = dict.fromkeys(_FIELDS, "default")
    path = config_file or (Path(environ["FEED_CONFIG"]) if environ.get("FEED_CONFIG") else None)
    if path is not None:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read the configuration file {path}: {exc}") from None
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in _FIELDS:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            values[name], sources[name] = _convert(name, value, str(path)), str(path)
    for name in _FIELDS:
        env_name = "FEED_" + name.upper()
        if env_name in environ:
            values[name], sources[name] = _convert(name, environ[env_name], env_name), env_name
    for name, value in flags.items():
        if name in _FIELDS:
            flag = "--" + name.replace("_", "-")
            values[name], sources[name] = _convert(name, value, flag), flag
    return Settings(**values), sources
