"""The benchmark's figures as a picture: latency distribution and throughput against clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

COLORS = {"feed": "#1f6feb", "naive": "#d1242f"}


def draw(results: dict[str, Any], path: Path) -> None:
    runs = [r for r in results["runs"] if r["scenario"] in ("burst", "rate")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    largest = max((r["clients"] for r in runs), default=0)
    for r in runs:
        if r["scenario"] != "rate" or r["clients"] != largest or not r.get("latency_cdf_ms"):
            continue
        values = r["latency_cdf_ms"]
        ys = [i / (len(values) - 1) for i in range(len(values))]
        lat = r["latency_ms"]
        label = f"{r['server']}: p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms"
        left.plot(values, ys, color=COLORS[r["server"]], label=label)
    left.set_xscale("log")
    left.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set_xlabel("publish to receive (ms, log scale)")
    left.set_ylabel("share of deliveries")
    rate = next((r["rate"] for r in runs if r["scenario"] == "rate"), 0)
    left.set_title(f"Latency, {largest:,} clients, {rate:g} messages/s")
    left.grid(True, which="both", alpha=0.3)
    left.legend(loc="lower right")
    for server in ("feed", "naive"):
        points = sorted(
            (r["clients"], r["deliveries_per_s"])
            for r in runs
            if r["server"] == server and r["scenario"] == "burst"
        )
        if points:
            right.plot(
                [x for x, _ in points],
                [y / 1000 for _, y in points],
                "o-",
                color=COLORS[server],
                label=server,
            )
    right.set_xlabel("clients")
    right.set_ylabel("deliveries per second (thousands)")
    messages = next((r["messages"] for r in runs), 0)
    right.set_title(f"Throughput, burst of {messages} messages")
    right.set_ylim(bottom=0)
    right.grid(True, alpha=0.3)
    right.legend(loc="upper left")
    m = results["machine"]
    fig.suptitle(
        f"feed bench: {m['cores']} cores ({m['processor']}), Python {m['python']},"
        f" {m['date']}; server, Redis and load generators share the machine",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
