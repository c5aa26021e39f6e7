"""Synthetic programs for the page tests: any number of rooms, long French titles, and sessions
on now and next relative to the real time, as a `schedule.json` export the importer reads.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from publisher import Publisher
from tests.conftest import get

ZONE = "Europe/Paris"

# Real-looking titles of the lengths programs have: most of them long, some very long.
TITLES = [
    "Démystifier l'intelligence artificielle : ce qu'elle peut (et ne peut pas) faire pour une "
    "ville",
    "Données ouvertes municipales : par où commencer quand on n'a ni équipe, ni budget, ni "
    "feuille de route ?",
    "Tramway, busway et bus : vers une billettique intégrée à l'échelle de l'agglomération",
    "Atelier : concevoir un service public numérique avec ses usagers, de l'entretien au "
    "prototype testé en mairie",
    "Traitement automatique des réclamations citoyennes : retour d'expérience de trois "
    "arrondissements",
    "Éclairage public intelligent et réduction de la facture énergétique : le bilan chiffré "
    "après deux années d'exploitation",
    "Gouvernance des données urbaines",
    "Table ronde : quelle place pour les start-up dans la commande publique des collectivités "
    "territoriales ?",
]
ROOM_NAMES = [
    "Atlas", "Anfa", "Zerktouni", "Oasis", "Amphithéâtre Ibn Battouta",
    "Salle de conférences Hassan II — niveau 2", "Agora", "Studio Mogador",
]  # fmt: skip
TRACKS = ["IA et services publics", "Mobilité urbaine", "Participation citoyenne", "Énergie"]
SPEAKERS = [
    ["Nadia Tazi"],
    ["Imane Lahlou", "Marta Vidal"],
    ["Yassine Tahiri", "Inês Carvalho", "Laila Harrak"],
]
ANNOUNCEMENT = (
    "Rappel important : la plénière de clôture est déplacée de l'amphithéâtre principal vers le "
    "grand hall d'exposition en raison de travaux ; les navettes vers la gare de Casa-Voyageurs "
    "partiront du parvis nord à 17 h 30, 18 h 00 et 18 h 30, et le vestiaire ferme à 19 h. "
    "Pensez à rendre vos badges à l'accueil en sortant."
)


def room_name(i: int) -> str:
    base = ROOM_NAMES[i % len(ROOM_NAMES)]
    return base if i < len(ROOM_NAMES) else f"{base} {i // len(ROOM_NAMES) + 1}"


def title(i: int, slot: int) -> str:
    return TITLES[(i * 3 + slot) % len(TITLES)]


def program(rooms: int, now: datetime | None = None) -> bytes:
    """A program of `rooms` rooms, each with a session on now (ending in 30 to 50 minutes), the
    next one after it, and one more later."""
    tz = ZoneInfo(ZONE)
    now = (now or datetime.now(UTC)).astimezone(tz).replace(second=0, microsecond=0)
    days: dict[str, dict[str, list[dict[str, Any]]]] = {}
    names = [room_name(i) for i in range(rooms)]
    serial = 0
    for i, name in enumerate(names):
        start = now - timedelta(minutes=10 + i % 3 * 5)
        for slot in range(3):
            length = timedelta(minutes=45 + 15 * (slot % 2))
            serial += 1
            day = start.date().isoformat()
            days.setdefault(day, {}).setdefault(name, []).append(
                {
                    "id": serial,
                    "guid": f"00000000-0000-4000-8000-{serial:012d}",
                    "date": start.isoformat(),
                    "start": start.strftime("%H:%M"),
                    "duration": f"{length.seconds // 3600:02d}:{length.seconds // 60 % 60:02d}",
                    "room": name,
                    "slug": f"synthetic-{serial}",
                    "title": title(i, slot),
                    "track": TRACKS[(i + slot) % len(TRACKS)],
                    "type": "talk",
                    "language": "fr",
                    "abstract": "",
                    "persons": [
                        {"id": 1000 + serial * 4 + n, "public_name": person}
                        for n, person in enumerate(SPEAKERS[(i + slot) % len(SPEAKERS)])
                    ],
                    "links": [],
                }
            )
            start += length + timedelta(minutes=15)
    first, last = min(days), max(days)
    doc = {
        "schedule": {
            "version": "synthetic",
            "conference": {
                "acronym": "synthetic",
                "title": "Forum des villes intelligentes",
                "start": first,
                "end": last,
                "daysCount": len(days),
                "time_zone_name": ZONE,
                "rooms": [{"name": name} for name in names],
                "days": [
                    {"index": n + 1, "date": day, "rooms": days[day]}
                    for n, day in enumerate(sorted(days))
                ],
            },
        }
    }
    return orjson.dumps(doc)


# Every room gets an operator's status, so each card shows one.
STATUSES: list[tuple[str, dict[str, Any]]] = [
    ("live", {}),
    ("delayed", {"delay": 5}),
    ("full", {}),
    ("starting", {}),
]


async def prepare(redis_url: str, server_url: str, rooms: int) -> list[str]:
    """Import a program of `rooms` rooms through the publisher, set each room's status and post
    a long announcement to everyone; the room ids, in the program's order."""
    async with Publisher(redis_url) as pub:
        await pub.import_program(program(rooms), source="schedule.json")
        _, schedule = await asyncio.to_thread(get, server_url + "/api/schedule")
        ids: list[str] = [room["id"] for room in schedule["rooms"]]
        for i, room in enumerate(ids):
            status, extra = STATUSES[i % len(STATUSES)]
            await pub.status(room, status, **extra)
        await pub.announce(ANNOUNCEMENT)
    return ids
