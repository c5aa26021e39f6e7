"""The tz data the server trusts, and the venue offsets it gives the pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feed import program, zones
from feed.errors import ConfigError, InvalidMessage
from publisher import importers

MS = 1000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * MS)


def test_versions_are_read_from_the_system_files_and_the_wheel(tmp_path: Path) -> None:
    zi = tmp_path / "tzdata.zi"
    zi.write_text("# version 2025b\n# more\n")
    assert zones._read_version(zi) == "2025b"
    zi.write_text("not a version line\n")
    assert zones._read_version(zi) is None
    assert zones._read_version(tmp_path / "missing") is None
    import tzdata  # type: ignore[import-untyped]  # noqa: PLC0415

    assert zones.wheel_version() == tzdata.IANA_VERSION


def test_releases_order_as_iana_names_them() -> None:
    order = ["2024a", "2025b", "2026a", "2026f", "2026z", "2026aa"]
    shuffled = [order[3], order[0], order[5], order[1], order[4], order[2]]
    assert sorted(shuffled, key=zones._order) == order
    assert zones._order(None) < zones._order("1990a")


def test_auto_takes_the_newer_database_and_a_setting_may_force_one() -> None:
    auto, system, wheel = zones.choose("auto"), zones.choose("system"), zones.choose("wheel")
    assert system.source == "system" and wheel.source == "wheel"
    newer = max((system, wheel), key=lambda db: zones._order(db.version))
    assert auto.version == newer.version
    with pytest.raises(ConfigError, match="auto, system, wheel"):
        zones.choose("newest")


@pytest.mark.parametrize("name", ["Nowhere/City", "", "../../etc/passwd", "Europe", "/etc/x"])
@pytest.mark.parametrize("source", ["system", "wheel"])
def test_unknown_zones_are_refused_by_both_sources(source: str, name: str) -> None:
    with pytest.raises(InvalidMessage, match="unknown time zone"):
        zones.choose(source).zone(name)


def test_casablanca_is_at_utc_since_2026_09_20_in_the_wheel() -> None:
    tz = zones.choose("wheel").zone("Africa/Casablanca")
    table = zones.offsets(tz, ms("2026-12-07T12:00:00+00:00"))
    assert [ms("2026-09-20T01:00:00+00:00"), 0] in table
    assert zones.transitions(tz, ms("2026-12-07T12:00:00+00:00")) == (0, None)


def test_offsets_give_every_change_to_the_minute() -> None:
    tz = zones.choose("wheel").zone("Europe/Paris")
    table = zones.offsets(tz, ms("2026-06-01T00:00:00+00:00"))
    assert [ms("2026-03-29T01:00:00+00:00"), 120] in table
    assert [ms("2026-10-25T01:00:00+00:00"), 60] in table
    # The table agrees with zoneinfo at every hour of the window.
    start, end = table[0][0], table[-1][0] + 30 * 24 * 3600 * MS
    for at in range(start, end, 3600 * MS):
        expected = datetime.fromtimestamp(at / MS, UTC).astimezone(tz).utcoffset()
        in_force = next(off for when, off in reversed(table) if when <= at)
        assert expected == timedelta(minutes=in_force)


def test_a_zone_with_no_changes_has_one_offset() -> None:
    venue = zones.venue("Asia/Kolkata", ms("2026-12-07T00:00:00+00:00"))
    assert venue["offsets"] == [[venue["offsets"][0][0], 330]]  # type: ignore[index]
    assert zones.venue("Not/AZone", 0)["offsets"] == [
        [-zones.YEAR_MS // 86_400_000 * 86_400_000, 0]
    ]


def test_the_summary_says_which_data_and_what_comes_next() -> None:
    line = zones.summary(zones.choose("wheel"), "Europe/Paris", ms("2026-06-01T00:00:00+00:00"))
    assert "UTC+02:00 now" in line and "next change 2026-10-25 01:00 UTC, to UTC+01:00" in line
    assert f"IANA {zones.wheel_version()} (wheel)" in line
    assert "no venue zone yet" in zones.summary(zones.choose("wheel"), None, 0)


def test_a_printed_time_imports_in_the_zone_the_server_trusts() -> None:
    """A frab file without a zone, read in Africa/Casablanca: 10:00 printed is 10:00 served."""
    xml = b"""<?xml version="1.0"?><schedule><conference><acronym>c</acronym><title>C</title>
    <start>2026-12-08</start><end>2026-12-08</end></conference>
    <day index="1" date="2026-12-08"><room name="Atlas">
    <event guid="11111111-1111-4111-8111-111111111111" id="1"><start>10:00</start>
    <duration>01:00</duration><room>Atlas</room><title>Opening</title></event>
    </room></day></schedule>"""
    parsed = importers.read(xml, source="t.xml", venue_zone="Africa/Casablanca").program
    served = parsed.to_json("Africa/Casablanca")["sessions"][0]
    trusted = zones.trusted()
    local = datetime(2026, 12, 8, 10, tzinfo=trusted.zone("Africa/Casablanca"))
    assert datetime.fromisoformat(served["start"]) == local
    assert served["start"].startswith("2026-12-08T10:00:00")
    if trusted.source == "wheel" and zones._order(trusted.version) >= zones._order("2026f"):
        assert served["start"] == "2026-12-08T10:00:00+00:00"
    assert program.zone_info("Africa/Casablanca") is trusted.zone("Africa/Casablanca")
