"""A synthetic program the size of a big conference (10,000 sessions in 100 rooms), and the
import measured on it: `python -m tests.publisher.big_program REDIS_URL` prints the time and
peak memory of a first import and of a re-import with 50 changes (docs/performance.md)."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from datetime import datetime, timedelta
from typing import Any

from publisher import Publisher

ROOMS, SESSIONS = 100, 10_000


def program(changed: int = 0) -> dict[str, Any]:
    """schedule.json with SESSIONS sessions over ROOMS rooms and 5 days, 20-minute slots; the
    first `changed` sessions of room 0..changed-1 start 5 minutes later."""
    per_room = SESSIONS // ROOMS
    days = []
    for day in range(5):
        date = datetime(2026, 6, 1) + timedelta(days=day)
        rooms: dict[str, list[dict[str, Any]]] = {}
        for r in range(ROOMS):
            events = []
            for k in range(per_room // 5):
                n = (r * per_room) + day * (per_room // 5) + k
                start = date + timedelta(
                    hours=8, minutes=20 * k + (5 if k == 0 and r < changed and day == 0 else 0)
                )
                events.append(
                    {
                        "id": n,
                        "guid": f"s-{n:05d}",
                        "date": start.isoformat(),
                        "start": start.strftime("%H:%M"),
                        "duration": "00:20",
                        "room": f"Room {r}",
                        "title": f"Session {n}: a title about as long as a real one",
                        "language": "en",
                        "track": f"Track {r % 12}",
                        "type": "lecture",
                        "abstract": "An abstract of a few sentences. " * 6,
                        "persons": [{"public_name": f"Speaker {n}"}, {"public_name": f"Co {n}"}],
                    }
                )
            rooms[f"Room {r}"] = events
        days.append({"index": day + 1, "date": date.date().isoformat(), "rooms": rooms})
    return {
        "schedule": {
            "conference": {
                "acronym": "big26",
                "title": "Big Conference 2026",
                "time_zone_name": "Europe/Paris",
                "rooms": [{"name": f"Room {r}"} for r in range(ROOMS)],
                "days": days,
            }
        }
    }


async def measure(url: str) -> None:
    first, second = json.dumps(program()).encode(), json.dumps(program(changed=50)).encode()
    async with Publisher(url) as pub:
        for label, data in [("first import", first), ("re-import, 50 changed", second)]:
            started = time.perf_counter()
            result = await pub.import_program(data, source="big.json")
            took = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{label}: {len(data) / 1e6:.1f} MB, {result['sessions']} sessions,"
                f" {len(result['changes'])} changes, {took:.2f} s, peak RSS {peak:.0f} MiB"
            )


if __name__ == "__main__":
    asyncio.run(measure(sys.argv[1]))
