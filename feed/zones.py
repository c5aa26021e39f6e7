"""Which IANA tz database the server trusts for venue time, and the zones it reads from it.

Python's `zoneinfo` reads the system's zone files first and falls back to the `tzdata` wheel
only for a zone the system lacks. Systems lag: a Debian whose zone files say 2025b still puts
Casablanca at +01:00 after Morocco moved to +00:00 (2026f), while the wheel we pin has the
change. The server is the one authority on venue time, so it takes the newer of the two (or the
one a setting names) for every zone it reads, and says which in `feed config check`, at
start-up and in the test run's header.
"""

from __future__ import annotations

import functools
import importlib
import re
import zoneinfo
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from feed.errors import ConfigError, InvalidMessage

SOURCES = ("auto", "system", "wheel")
_VERSION = re.compile(r"^#\s*version\s+(\d{4})([a-z]*)\s*$")


@dataclass(frozen=True, slots=True)
class TzDatabase:
    source: str  # "system" or "wheel": where zones are read from
    version: str | None  # the IANA release, such as "2026f"; None when it cannot be told

    def zone(self, name: str) -> ZoneInfo:
        """The zone called `name` from this database; InvalidMessage when there is none."""
        return _zone(self.source, name)

    def describe(self) -> str:
        return f"IANA {self.version or 'unknown version'} ({self.source})"


def system_version() -> str | None:
    """The release of the system's zone files (the first TZPATH folder that names one)."""
    for folder in zoneinfo.TZPATH:
        version = _read_version(Path(folder) / "tzdata.zi")
        if version:
            return version
    return None


def wheel_version() -> str | None:
    """The release the `tzdata` wheel carries, or None when it is not installed."""
    try:
        # Imported by name: the wheel ships no type information, and only its version is wanted.
        tzdata = importlib.import_module("tzdata")
    except ImportError:
        return None
    version = getattr(tzdata, "IANA_VERSION", None)
    return version if isinstance(version, str) else None


def _read_version(path: Path) -> str | None:
    try:
        with path.open(encoding="ascii", errors="replace") as file:
            first = file.readline()
    except OSError:
        return None
    match = _VERSION.match(first)
    return match.group(1) + match.group(2) if match else None


def _order(version: str | None) -> tuple[int, int, str]:
    """A sort key: 2026f > 2026a > 2025z; "2026aa" > "2026z" (IANA's rule after z)."""
    if not version:
        return (0, 0, "")
    match = re.fullmatch(r"(\d{4})([a-z]*)", version)
    if not match:
        return (0, 0, "")
    return (int(match.group(1)), len(match.group(2)), match.group(2))


@functools.cache
def choose(preference: str = "auto") -> TzDatabase:
    """The database to trust: the newer of the system's and the wheel's, or the one named."""
    if preference not in SOURCES:
        raise ConfigError(f"tz data source {preference!r}: use one of {', '.join(SOURCES)}")
    system, wheel = system_version(), wheel_version()
    if preference == "wheel" or (preference == "auto" and _order(wheel) > _order(system)):
        if wheel is None:
            raise ConfigError("tz data source 'wheel': the tzdata package is not installed")
        return TzDatabase("wheel", wheel)
    if preference == "system" and system is None and not zoneinfo.TZPATH:
        raise ConfigError("tz data source 'system': this system has no zone files")
    return TzDatabase("system", system)


@functools.lru_cache(maxsize=64)
def _zone(source: str, name: str) -> ZoneInfo:
    problem = InvalidMessage(f"unknown time zone {name!r}: use an IANA name such as Europe/Paris")
    if source == "system":
        try:
            return ZoneInfo(name)
        except (ValueError, OSError, LookupError):  # a bad key, a folder like "Europe", unknown
            raise problem from None
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") for part in parts):
        raise problem
    try:
        with resources.files("tzdata.zoneinfo").joinpath(*parts).open("rb") as file:
            return ZoneInfo.from_file(file, key=name)
    except (ValueError, OSError, LookupError, ModuleNotFoundError):
        raise problem from None
