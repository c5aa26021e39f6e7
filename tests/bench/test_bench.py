"""`feed bench` end to end, small: real servers, real load generator processes, real Redis."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from feed.bench.proxy import find_nginx
from tests.conftest import feed_command


@pytest.mark.timeout(180)
def test_bench_measures_both_servers_and_counts_every_message(tmp_path: Path) -> None:
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    via_nginx = find_nginx() is not None  # the compose topology's proxy, when there is one
    done = subprocess.run(
        feed_command(
            "bench", "--clients", "20,60", "--messages", "30", "--rate", "60", "--idle", "200",
            "--loadgens", "2", "--json", str(out), "--plot", str(plot), "--timeout", "60",
            "--workers", "2", "--rooms", "3", *(["--proxy"] if via_nginx else []),
        ),
        capture_output=True, text=True, timeout=170, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = orjson.loads(out.read_bytes())
    runs = results["runs"]
    scenarios = {(r["server"], r["scenario"], r["clients"]) for r in runs}
    for server in ("feed", "naive"):
        for n in (20, 60):
            assert {(server, "burst", n), (server, "rate", n)} <= scenarios
    assert ("feed", "storm", 60) in scenarios
    if via_nginx:  # the same steady scenario through nginx, beside the direct one
        assert ("feed", "rate-proxy", 60) in scenarios
        cost = results["proxy"]
        assert cost["clients"] == 60 and cost["cpu_s"]["nginx"] >= 0
        assert cost["p99_added_ms"] == cost["p99_ms"] - cost["direct_p99_ms"]
        assert "through nginx, N=60" in done.stdout
    for r in runs:
        if r["scenario"] == "idle":
            assert r["clients"] == 200 and r["failed"] == 0
            assert 0 < r["bytes_per_connection"] < 200_000
            continue
        assert r["expected"] == r["clients"] * 30
        assert (r["received"], r["lost"], r["duplicates"], r["reordered"]) == (
            r["expected"], 0, 0, 0
        )  # fmt: skip
        assert r["deliveries_per_s"] > 0 and r["latency_ms"]["p50"] <= r["latency_ms"]["max"]
        assert r["cpu_s"]["server"] >= 0 and r["server_memory"]["peak"] > 0
    storm = next(r["storm"] for r in runs if r["scenario"] == "storm")
    assert storm["resumed"] == 60 and storm["snapshots"] == 0 and storm["failed"] == 0
    # Where the storm's time went, step by step, for every client.
    assert set(storm["steps_s"]) == {"slot", "tcp", "upgrade", "subscribe"}
    for step in storm["steps_s"].values():
        assert 0 <= step["p50"] <= step["p99"] <= step["max"] < 60
    assert set(results["ratios"]) == {"burst@20", "rate@20", "burst@60", "rate@60"}
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "feed / naive, burst@60" in done.stdout
    again = tmp_path / "again.png"  # drawn again from the figures alone
    redrawn = subprocess.run(
        feed_command("bench", "--replot", str(out), "--plot", str(again)),
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert redrawn.returncode == 0, redrawn.stderr
    assert again.read_bytes().startswith(b"\x89PNG")


def test_bench_refuses_bad_counts(tmp_path: Path) -> None:
    done = subprocess.run(
        feed_command("bench", "--clients", "many"),
        capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--clients takes whole numbers" in done.stderr
