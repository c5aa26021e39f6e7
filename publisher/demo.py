"""The demo: Smart City Expo Casablanca 2019 (17-18 April, Hyatt Regency) running live.

`feed demo` (or `feed serve --demo`) imports the program shipped in `publisher/demo/`, runs the
server on an accelerated clock that starts on the morning of the first day, and plays a room
operator in every room (starting, live, sometimes late or full, ended) and a moderator posting
announcements in French, Arabic and English, one of them an emergency drill. Everything goes
through the same publishing path as the real operators; nothing is faked on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from feed import keys
from feed.clock import Clock
from feed.errors import FeedError, raise_if_cancelled
from feed.models import Kind
from publisher.api import Publisher

log = logging.getLogger(__name__)

PROGRAM = resources.files("publisher").joinpath("demo", "smart-city-expo-2019.json")
ZONE = ZoneInfo("Africa/Casablanca")
START = datetime(2019, 4, 17, 8, 40, tzinfo=ZONE)  # before the doors open
END = datetime(2019, 4, 18, 19, 0, tzinfo=ZONE)
STEP = 1.0  # real seconds between two looks at the program
CLOCK_SHARE_EVERY = 10.0  # real seconds between two refreshes of the shared clock
CLOCK_TTL = 30  # seconds: a demo that stopped stops lending its clock soon after


def clock(rate: float) -> Clock:
    """The demo's clock: from the morning of the first day, `rate` times faster than real time
    (at 30, both days and the night between them pass in about 70 minutes); then it starts
    over."""
    return Clock(start=START.timestamp(), rate=rate, period=(END - START).total_seconds())


@dataclass(frozen=True, slots=True)
class Note:
    """A moderator's announcement at a given time of the conference."""

    at: datetime
    text: dict[str, str]
    rooms: tuple[str, ...] = ()
    priority: str = "info"
    minutes: int = 60  # how long it stays up


NOTES = (
    Note(
        datetime(2019, 4, 17, 8, 45, tzinfo=ZONE),
        {
            "fr": "Bienvenue à la 4e édition de Smart City Expo Casablanca !",
            "ar": "مرحبا بكم في الدورة الرابعة لمعرض المدن الذكية بالدار البيضاء!",
            "en": "Welcome to the 4th Smart City Expo Casablanca!",
        },
        minutes=120,
    ),
    Note(
        datetime(2019, 4, 17, 10, 5, tzinfo=ZONE),
        {
            "fr": "La salle Atlas est complète : la plénière est retransmise en salle Oasis.",
            "ar": "قاعة أطلس ممتلئة: الجلسة العامة تُبث مباشرة في قاعة الواحة.",
            "en": "Atlas is full: the plenary is streamed live in Oasis.",
        },
        rooms=("atlas", "oasis"),
        priority="important",
        minutes=45,
    ),
    Note(
        datetime(2019, 4, 17, 12, 45, tzinfo=ZONE),
        {
            "fr": "Le déjeuner est servi au Jardin, rez-de-chaussée.",
            "ar": "الغداء يُقدَّم في الحديقة، الطابق الأرضي.",
            "en": "Lunch is served in the Garden, ground floor.",
        },
        minutes=75,
    ),
    Note(
        datetime(2019, 4, 17, 15, 30, tzinfo=ZONE),
        {
            "fr": "Exercice d'évacuation : suivez les consignes du personnel vers la sortie.",
            "ar": "تمرين إخلاء: يرجى اتباع تعليمات الطاقم نحو المخرج.",
            "en": "Evacuation drill: please follow the staff to the exit.",
        },
        priority="emergency",
        minutes=6,
    ),
    Note(
        datetime(2019, 4, 18, 8, 50, tzinfo=ZONE),
        {
            "fr": "Deuxième journée : bonne conférence à toutes et à tous.",
            "ar": "اليوم الثاني: نتمنى لكم مؤتمرا موفقا.",
            "en": "Day two: have a great conference.",
        },
        minutes=90,
    ),
    Note(
        datetime(2019, 4, 18, 17, 30, tzinfo=ZONE),
        {
            "fr": "La séance de clôture commence à 18 h en salle Atlas.",
            "ar": "تبدأ الجلسة الختامية على الساعة السادسة مساء في قاعة أطلس.",
            "en": "The closing session starts at 6 pm in Atlas.",
        },
        minutes=40,
    ),
)


def wanted_status(sessions: list[dict[str, Any]], now: datetime) -> tuple[str, int, str | None]:
    """What a diligent operator would show at `now`: (status, delay, session id)."""
    for s in sessions:
        if s.get("type") == "break":
            continue  # nobody marks a coffee break
        start, end = datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"])
        luck = random.Random(s["id"]).random()  # the same mishaps every run
        delay = 10 if luck < 0.12 else 5 if luck < 0.25 else 0
        late_start = start + timedelta(minutes=delay)
        if start - timedelta(minutes=10) <= now < late_start:
            return ("delayed" if delay and now >= start else "starting"), delay, s["id"]
        if late_start <= now < end + timedelta(minutes=delay):
            return ("full" if luck > 0.85 else "live"), delay, s["id"]
    ended = [
        s for s in sessions if s.get("type") != "break" and datetime.fromisoformat(s["end"]) <= now
    ]
    return ("ended" if ended else "upcoming"), 0, ended[-1]["id"] if ended else None


async def drive(pub: Publisher, demo_clock: Clock) -> None:
    """Import the program, then play the operators and the moderator until cancelled."""
    result = await pub.import_program(
        PROGRAM.read_bytes(), source=PROGRAM.name, title="Smart City Expo Casablanca 2019"
    )
    log.info(
        "demo: %s, %d rooms, %d sessions, clock x%g from %s",
        result["conference"]["title"],
        result["rooms"],
        result["sessions"],
        demo_clock.rate,
        START.isoformat(),
    )
    raw, _, _ = await pub.bus.program()
    doc = orjson.loads(raw or b"{}")
    rooms: dict[str, list[dict[str, Any]]] = {r["id"]: [] for r in doc["rooms"]}
    for s in doc["sessions"]:
        rooms[s["room"]].append(s)
    # Announcements left by an earlier run belong to another moment of the conference.
    for channel in ["venue", *(f"room:{room}" for room in rooms)]:
        for old in (await pub.bus.sync(channel)).state.get("announcements", []):
            await pub.publish(channel, Kind.RETRACT, {"id": old["id"], "reason": "retracted"})
    shown: dict[str, tuple[str, int, str | None]] = {}
    posted: dict[int, str] = {}  # note -> the id it was posted with
    previous = datetime.fromtimestamp(demo_clock(), ZONE)
    shared_at = 0.0
    while True:
        if time.monotonic() - shared_at > CLOCK_SHARE_EVERY:
            # Other publishers (`feed publish`) stamp their events with this clock while it plays.
            with contextlib.suppress(FeedError):
                await pub.bus.remember(keys.CLOCK, demo_clock.to_json(), CLOCK_TTL)
                shared_at = time.monotonic()
        now = datetime.fromtimestamp(demo_clock(), ZONE)
        if now < previous:  # the clock started over: so does the moderator
            posted.clear()
        previous = now
        try:
            for room, sessions in rooms.items():
                want = wanted_status(sessions, now)
                if shown.get(room) != want:
                    status, delay, session = want
                    await pub.status(room, status, delay=delay, session=session)
                    shown[room] = want
            for i, note in enumerate(NOTES):
                ends = note.at + timedelta(minutes=note.minutes)
                if i not in posted and note.at <= now < ends:
                    # An emergency has no expiry: it stays until someone retracts it.
                    urgent = note.priority == "emergency"
                    made = await pub.announce(
                        note.text,
                        rooms=note.rooms,
                        priority=note.priority,
                        expires_at=None if urgent else int(ends.timestamp()) * 1000,
                    )
                    posted[i] = made["id"]
                elif i in posted and note.priority == "emergency" and now >= ends:
                    await pub.retract(posted.pop(i))  # the drill is over
        except FeedError as exc:
            raise_if_cancelled(exc)
            log.warning("demo: %s; trying again", exc)
        await asyncio.sleep(STEP)
