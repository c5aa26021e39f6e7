"""Programs for the phone's tests, screenshots and load measurement.

`today()`: the demo's Smart City Expo (4 rooms, 66 sessions over two days, titles, abstracts,
tracks and rooms in French, Arabic and English), moved in time so that its first day is the
venue's today and the opening ceremony has been on for ten minutes: the phone then has
something on now, next, later and tomorrow, whatever day the tests run.

`large(n)`: a program of `n` sessions over 4 days in 20 rooms with texts about as long as real
ones (titles, two speakers, a 600-character abstract), for the first-load measurement.
"""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

DEMO = resources.files("publisher").joinpath("demo", "smart-city-expo-2019.json")
ZONE = ZoneInfo("Africa/Casablanca")
OPENING = "SCE001"  # Atlas, 09:15-10:00 on the first day


def today(now: datetime | None = None, on_for: timedelta = timedelta(minutes=10)) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DEMO.read_text(encoding="utf-8"))
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    opening = next(t for t in doc["talks"] if t.get("code") == OPENING)
    shift = now - on_for - datetime.fromisoformat(opening["start"])
    for talk in doc["talks"]:
        for key in ("start", "end"):
            talk[key] = (datetime.fromisoformat(talk[key]) + shift).astimezone(UTC).isoformat()
    first = (datetime.fromisoformat(opening["start"]) + shift).astimezone(ZONE).date()
    doc["event_start"] = first.isoformat()
    doc["event_end"] = (first + timedelta(days=1)).isoformat()
    return doc


def session_ids(doc: dict[str, Any]) -> dict[str, str]:
    """English title -> the session id the importer gives it (the pretalx code)."""
    return {t["title"]["en"]: t["code"] for t in doc["talks"] if t.get("code")}


SYLLABLES = tuple(f"{c}{v}" for c in "bcdfglmnprstv" for v in "aeio")


def _vocabulary(size: int = 4000) -> list[str]:
    """Made-up words, as many different ones as a real program's texts have: a program of
    repeated words would compress far better than a real one and flatter the measurement."""
    pick = random.Random(17)
    return ["".join(pick.choice(SYLLABLES) for _ in range(pick.randint(1, 4))) for _ in range(size)]


def large(n: int = 1000, rooms: int = 20, days: int = 4) -> dict[str, Any]:
    """A frab schedule.json of `n` sessions (Africa/Casablanca, June 2026)."""
    pick = random.Random(n)
    vocabulary = _vocabulary()
    per_day = -(-n // days)
    per_room = -(-per_day // rooms)
    out_days = []
    number = 0
    for d in range(days):
        date = datetime(2026, 6, 1) + timedelta(days=d)
        by_room: dict[str, list[dict[str, Any]]] = {}
        for r in range(rooms):
            talks = []
            for k in range(per_room):
                if number >= n:
                    break
                start = date + timedelta(hours=8, minutes=35 * k)
                words = pick.choices(vocabulary, k=90)
                talks.append(
                    {
                        "id": number,
                        "guid": f"big-{number:05d}",
                        "date": start.isoformat() + "+01:00",
                        "start": start.strftime("%H:%M"),
                        "duration": "00:30",
                        "room": f"Room {r}",
                        "title": " ".join(words[:9]).capitalize(),
                        "language": ("fr", "en", "ar")[number % 3],
                        "track": f"Track {r % 8}",
                        "type": "talk",
                        "abstract": " ".join(words).capitalize() + ".",
                        "persons": [
                            {"public_name": f"Speaker {number}"},
                            {"public_name": f"Co-speaker {number}"},
                        ],
                    }
                )
                number += 1
            by_room[f"Room {r}"] = talks
        out_days.append({"index": d + 1, "date": date.date().isoformat(), "rooms": by_room})
    return {
        "schedule": {
            "conference": {
                "acronym": "large26",
                "title": "Large Conference 2026",
                "time_zone_name": "Africa/Casablanca",
                "rooms": [{"name": f"Room {r}"} for r in range(rooms)],
                "days": out_days,
            }
        }
    }


def moved(doc: dict[str, Any], code: str, room: int) -> dict[str, Any]:
    """The same program with session `code` in room `room` (a re-import that moves it)."""
    changed = copy.deepcopy(doc)
    for talk in changed["talks"]:
        if talk.get("code") == code:
            talk["room"] = room
    return changed
