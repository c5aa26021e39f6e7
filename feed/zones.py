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
from datetime import UTC, datetime, timedelta
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


# Which database `trusted()` gives, as `prefer()` set it. Process-wide on purpose, like
# zoneinfo's own TZPATH (`zoneinfo.reset_tzpath`): one process has one notion of venue time,
# and every zone it reads, in the importers, the program and the pages' offsets, must agree.
_preferred: list[str] = ["auto"]


def prefer(preference: str) -> TzDatabase:
    """Set the process's source of tz data (FEED_TZDATA: auto, system or wheel) and return it."""
    database = choose(preference)
    _preferred[0] = preference
    return database


def trusted() -> TzDatabase:
    """The database every venue time of this process is read with."""
    return choose(_preferred[0])


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


# ---- what the pages need --------------------------------------------------------------------

YEAR_MS = 366 * 24 * 3600 * 1000
_DAY = timedelta(days=1)


def offsets(tz: ZoneInfo, around_ms: int, span_ms: int = YEAR_MS) -> list[list[int]]:
    """The zone's UTC offsets from `around_ms - span_ms` to `around_ms + span_ms`, as
    [[from_ms, offset_minutes], ...]: the first entry is in force at the window's start, each
    later one from its instant on. The pages place every venue time with these, never with their
    browser's own (maybe years old) tz database. A year each way covers any program."""
    return _offsets(tz, around_ms // 86_400_000, span_ms // 86_400_000)


@functools.lru_cache(maxsize=32)
def _offsets(tz: ZoneInfo, day: int, span_days: int) -> list[list[int]]:
    start = datetime.fromtimestamp((day - span_days) * 86_400, UTC)
    found = [[_ms(start), _minutes(tz, start)]]
    when = start
    for _ in range(2 * span_days + 1):
        later = when + _DAY
        if _minutes(tz, later) != _minutes(tz, when):
            found.append([_ms(_first_change(tz, when, later)), _minutes(tz, later)])
        when = later
    return found


def venue(zone: str, now_ms: int) -> dict[str, object]:
    """Venue time for the pages (the `venue` of a hello): the zone, the IANA release it is read
    from, and its offsets a year each way. An unknown zone gives UTC's, under its own name."""
    database = trusted()
    try:
        tz = database.zone(zone)
    except InvalidMessage:
        tz = database.zone("UTC")
    return {"zone": zone, "tzdata": database.version, "offsets": offsets(tz, now_ms)}


def transitions(tz: ZoneInfo, now_ms: int) -> tuple[int, tuple[int, int] | None]:
    """The offset in force at `now_ms` (minutes) and the next change within a year, if any, as
    (instant in ms, new offset in minutes)."""
    table = offsets(tz, now_ms)
    current = next(off for at, off in reversed(table) if at <= now_ms)
    upcoming = next(((at, off) for at, off in table if at > now_ms), None)
    return current, upcoming


def _first_change(tz: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first minute at which the offset differs from `before`'s (bisection, to the minute)."""
    low, high, was = before, after, _minutes(tz, before)
    while high - low > timedelta(minutes=1):
        mid = low + (high - low) / 2
        mid = mid.replace(second=0, microsecond=0)
        if mid <= low:
            break
        if _minutes(tz, mid) == was:
            low = mid
        else:
            high = mid
    return high


def _minutes(tz: ZoneInfo, when: datetime) -> int:
    offset = when.astimezone(tz).utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def offset_text(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def summary(database: TzDatabase, zone: str | None, now_ms: int) -> str:
    """One line for people: which tz data, and the venue's offset now and its next change."""
    others = {"system": system_version(), "wheel": wheel_version()}
    other = "wheel" if database.source == "system" else "system"
    data = f"{database.describe()}; the {other}'s is {others[other] or 'absent'}"
    if not zone:
        return f"tz data {data}; no venue zone yet (FEED_VENUE_ZONE, or a program's)"
    current, upcoming = transitions(database.zone(zone), now_ms)
    then = "no change within a year"
    if upcoming is not None:
        at = datetime.fromtimestamp(upcoming[0] / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
        then = f"next change {at}, to UTC{offset_text(upcoming[1])}"
    return f"venue time {zone}: UTC{offset_text(current)} now, {then} (tz data {data})"
