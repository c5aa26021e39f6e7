"""The publishing side's one path: an intent becomes a validated change and one atomic publish.

    async with Publisher(redis_url) as pub:
        await pub.status("atlas", "delayed", delay=10)
        await pub.announce("Keynote moved to Atlas", rooms=["atlas"], priority="important")

Each call returns once the change is in Redis (and on its way to every web process), and raises
`InvalidMessage` on bad input or `Unavailable` when Redis cannot be reached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import orjson

from feed import calendar, keys, models, program, reducer
from feed.bus import Bus, Published, Synced
from feed.clock import Clock
from feed.errors import Conflict, InvalidMessage, NotFound
from feed.models import Kind
from feed.protocol import Position

MAX_ATTEMPTS = 50
MAX_CHANGES_PER_EVENT = 100  # the rest are in GET /api/schedule's diff, by count
IMPORT_LOCK_TTL = 120  # seconds: an import that died does not block the next one for long


class Publisher:
    def __init__(
        self,
        redis_url: str,
        *,
        history: int = 1000,
        clock: Callable[[], float] | None = None,
        min_replicas: int | None = None,
    ) -> None:
        self._bus = Bus(redis_url, history=history, min_replicas=min_replicas)
        # None: real time, unless a demo plays on this Redis (its clock is found on entering):
        # events must carry the venue's time as every screen counts it.
        self._clock: Callable[[], float] = clock or time.time
        self._find_clock = clock is None
        # Where each channel stood after our last publish: usually still true, which makes a
        # publish one round trip. When another publisher moved it, Redis says so and we retry.
        self._known: dict[str, Synced] = {}
        # Concurrent calls on one Publisher take turns per channel, so only other processes can
        # make a publish retry.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def __aenter__(self) -> Publisher:
        try:
            await self._bus.ping()
            if self._find_clock:
                shared = Clock.from_json(await self._bus.remembered(keys.CLOCK))
                self._clock = shared or time.time
        except BaseException:
            await self._bus.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._bus.aclose()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def publish(
        self, channel: str, kind: str, data: Any, *, change_id: str | None = None
    ) -> Published:
        """Publish one event on one channel; the reducer computes the state stored beside it.

        Data of a known kind must follow its rules (`models.publishable`, the check the reducers
        apply), else InvalidMessage: a screen would ignore it. Other kinds are published as they
        are, for newer readers (docs/protocol.md).

        `change_id` names the change across calls: a call that failed after Redis made the
        change (its answer lost, or too few replicas confirmed it) may be made again with the
        same id, and the change is then made once. None: a new id, good within this call."""
        channel = keys.channel(channel)
        return await self._send(channel, kind, models.publishable(channel, kind, data), change_id)

    async def _send(self, channel: str, kind: str, data: Any, change_id: str | None) -> Published:
        """`publish` of data already checked as `models.publishable` would."""
        async with self._locks[channel]:
            return await self._publish(channel, kind, data, change_id or secrets.token_hex(8))

    async def _publish(self, channel: str, kind: str, data: Any, change_id: str) -> Published:
        ts = self._now_ms()
        for _ in range(MAX_ATTEMPTS):
            known = self._known.get(channel)
            if known is None:
                known = await self._bus.sync(channel)
            state = reducer.apply(known.state, kind, data, ts)
            result = await self._bus.publish(
                channel,
                Position(known.epoch, known.seq),
                kind=kind,
                data=data,
                ts=ts,
                state=state,
                change_id=change_id,
            )
            if isinstance(result, Published):
                self._known[channel] = Synced(result.epoch, result.seq, state, [])
                return result
            self._known[channel] = result
        raise Conflict(f"{channel} kept changing under {MAX_ATTEMPTS} attempts to publish; retry")

    async def status(
        self,
        room: str,
        status: str,
        *,
        delay: int = 0,
        session: str | None = None,
        moved_to: str | None = None,
        change_id: str | None = None,
    ) -> Published:
        """Set a room's status (any status may follow any other)."""
        data = models.status_data(status, delay=delay, session=session, moved_to=moved_to)
        # Checked once: `status_data` is the status event's whole check, and a status is far
        # below the size limit and goes on a room's channel, as `publishable` requires.
        return await self._send(keys.room_channel(room), Kind.STATUS, data, change_id)

    @property
    def bus(self) -> Bus:
        return self._bus

    async def announce(
        self,
        text: str | dict[str, str],
        *,
        rooms: Iterable[str] = (),
        priority: str = models.Priority.INFO,
        expires_in: float | None = None,
        expires_at: int | None = None,
        announcement_id: str | None = None,
        change_id: str | None = None,
    ) -> models.Announcement:
        """Post an announcement to the named rooms, or to everyone (`venue`) when none is named.

        `text` is one string or one per language ({"fr": ..., "ar": ..., "en": ...}). It leaves
        every screen on its own after `expires_in` seconds, or at `expires_at` (Unix ms).
        Returns the announcement, with its `id` for a retraction. Posting again with the same
        `announcement_id` replaces it everywhere it went, which makes a retry safe; with the
        same `change_id` too, a retry makes no second event where the first call's was made.
        """
        ts = self._now_ms()
        if expires_in is not None:
            if expires_in <= 0:
                raise InvalidMessage("expires_in must be a positive number of seconds")
            expires_at = ts + int(expires_in * 1000)
        data = models.announcement(
            text,
            rooms=list(rooms),
            priority=priority,
            ts=ts,
            expires_at=expires_at,
            announcement_id=announcement_id,
        )
        channels = models.announcement_channels(data["rooms"])
        earlier = await self._bus.announcement(data["id"])
        previous = list(earlier["channels"]) if earlier else []
        # Recorded first: a retraction or an expiry must find every channel it may have reached.
        await self._bus.record_announcement(
            data["id"], sorted({*channels, *previous}), expires_at, previous=previous
        )
        for channel in channels:
            await self.publish(channel, Kind.ANNOUNCE, data, change_id=change_id)
        dropped = [ch for ch in previous if ch not in channels]
        for channel in dropped:  # a new version aimed at fewer rooms leaves the others
            await self.publish(channel, Kind.RETRACT, {"id": data["id"], "reason": "edited"})
        if dropped:
            await self._bus.forget_announcement(data["id"], dropped)
        return data

    async def retract(
        self, announcement_id: str, *, rooms: Iterable[str] | None = None, reason: str = "retracted"
    ) -> list[str]:
        """Withdraw an announcement from every channel it was posted to (or from the rooms
        named). Returns the channels it was withdrawn from."""
        if not announcement_id:
            raise InvalidMessage("give the id of the announcement to retract", field="id")
        if rooms is not None and list(rooms):
            channels = models.announcement_channels(sorted({keys.room_id(r) for r in rooms}))
        else:
            record = await self._bus.announcement(announcement_id)
            if record is None:
                raise NotFound(f"no announcement with id {announcement_id!r}")
            channels = record["channels"]
        for channel in channels:
            await self.publish(channel, Kind.RETRACT, {"id": announcement_id, "reason": reason})
        await self._bus.forget_announcement(announcement_id, channels)
        return channels

    async def expire_due(self) -> int:
        """Publish the expiry of every announcement whose time has come, once across all
        servers, so open screens drop it. Returns how many expiries this call published."""
        done = 0
        for channel, announcement_id in await self._bus.due_expiries(self._now_ms()):
            if await self._bus.claim_expiry(channel, announcement_id):
                data = {"id": announcement_id, "reason": "expired"}
                await self.publish(channel, Kind.RETRACT, data)
                await self._bus.forget_announcement(announcement_id, [channel])
                done += 1
        return done

    # ---- the program ----------------------------------------------------------------------

    async def follow_state(self) -> dict[str, Any] | None:
        """What `feed schedule follow` last recorded of itself (publisher.follow), or None when
        no follower has reported lately."""
        raw = await self._bus.remembered(keys.FOLLOW)
        try:
            state = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return None
        return state if isinstance(state, dict) else None

    async def check_rooms(self, rooms: Iterable[str], *, field: str = "room") -> None:
        """Once a program is imported, every room named must be one of its rooms: NotFound
        otherwise, saying where they are listed (before any import, any valid id goes)."""
        _in_program(await self._bus.program_rooms(), rooms, field)

    async def status_of_program_room(
        self,
        room: str,
        status: str,
        *,
        delay: int = 0,
        session: str | None = None,
        moved_to: str | None = None,
        change_id: str | None = None,
    ) -> Published:
        """`status`, as people publish it: the room and a `moved` room's destination must be
        rooms of the program (once one is imported), and `moved` names its destination."""
        if status == models.Status.MOVED and moved_to is None:
            raise InvalidMessage(
                "a room 'moved' needs the room it moved to (--to ROOM, or moved_to)",
                field="moved_to",
            )
        known = await self._bus.program_rooms()  # one read for both checks
        _in_program(known, [room], "room")
        if moved_to is not None:
            try:
                _in_program(known, [moved_to], "moved_to")
            except NotFound as exc:
                raise InvalidMessage(exc.message, field="moved_to") from None
        return await self.status(
            room, status, delay=delay, session=session, moved_to=moved_to, change_id=change_id
        )

    async def import_program(
        self,
        data: bytes,
        *,
        source: str,
        venue_zone: str | None = None,
        title: str | None = None,
        strict: bool = False,
    ) -> dict[str, Any]:
        """Import a program export (frab XML, schedule.json, pretalx widget JSON).

        Entries with one sensible reading are repaired and unusable ones skipped, both listed in
        the answer's `report` (`strict`: refused instead, see publisher.importers). A broken
        file raises InvalidMessage and changes nothing. Otherwise every room channel
        whose name or sessions differ from the new program gets a `program` event, the program
        is stored (GET /api/schedule), and `venue` gets a `schedule` event with what changed.
        What is published is decided from what each channel holds now, so importing the same
        program again publishes nothing, and retrying an import that failed halfway completes
        it. One import runs at a time.
        """
        from publisher import importers  # noqa: PLC0415 - only imports need the parsers

        if not await self._bus.remember(keys.IMPORT_LOCK, b"1", IMPORT_LOCK_TTL, first=True):
            raise Conflict("another import is running; try again in a moment")
        try:
            # Read under the lock: the room ids it assigns must not race another import's.
            raw_old, _, known = await self._bus.program()
            imported = await asyncio.to_thread(
                importers.read,
                data,
                source=source,
                venue_zone=venue_zone,
                known_rooms=known,
                title=title,
                strict=strict,
            )
            result = await self._import(imported.program, raw_old, known, source)
            return {**result, "report": imported.report.to_json()}
        finally:
            await self._bus.forget(keys.IMPORT_LOCK)

    async def _import(
        self, new: program.Program, raw_old: bytes | None, known: dict[str, str], source: str
    ) -> dict[str, Any]:
        old_json = orjson.loads(raw_old) if raw_old else None
        old = program.Program.from_json(old_json) if old_json else None
        zones = program.zone_changed(old, new)
        new_json = new.to_json(new.conference.timezone or "UTC")
        raw = orjson.dumps(new_json)
        etag = hashlib.sha256(raw).hexdigest()[:20]
        changes = [dataclasses.asdict(c) for c in program.diff(old, new)]
        rooms = {**known, **{room.name: room.id for room in new.rooms}}
        events = self._room_events(new_json, changes, sorted(set(rooms.values())))
        for channel, event_data in events:  # all checked before any is published
            try:
                models.event(Kind.PROGRAM, event_data)
            except InvalidMessage as exc:
                raise InvalidMessage(f"{source}: room {channel}: {exc.message}") from None
        for channel, event_data in events:
            held = (await self._bus.sync(channel)).state
            room = event_data["room"]
            wanted = room["name"], room["names"], event_data["sessions"]
            if (held.get("name"), held.get("names") or {}, held.get("sessions")) != wanted:
                await self.publish(channel, Kind.PROGRAM, event_data)
        await self._bus.save_program(
            raw, etag, rooms, [room.id for room in new.rooms], new.conference.timezone
        )
        # Calendars: new sessions, changed ones with a higher SEQUENCE, vanished ones cancelled.
        updates = calendar.advance(await self._bus.calendar(), new_json["sessions"], self._now_ms())
        if updates:
            await self._bus.save_calendar(updates)
        schedule = (await self._bus.sync(keys.VENUE)).state.get("schedule")
        if (schedule.get("etag") if schedule else None) != etag:
            summary = {
                "etag": etag,
                "conference": new_json["conference"],
                "changes": changes[:MAX_CHANGES_PER_EVENT],
                "changes_total": len(changes),
            }
            await self.publish(keys.VENUE, Kind.SCHEDULE, summary)
        return {
            "etag": etag,
            "conference": new_json["conference"],
            "rooms": len(new.rooms),
            "sessions": len(new.sessions),
            "changes": changes,
            # The zone alone changed (the file read again with the venue's): the printed times
            # are the same, so no session counts as retimed; said here, once.
            "zone_changed": {"old": zones[0], "new": zones[1]} if zones else None,
        }

    @staticmethod
    def _room_events(
        new: dict[str, Any], changes: list[dict[str, Any]], every_room: list[str]
    ) -> list[tuple[str, dict[str, Any]]]:
        """The `program` event each room channel should hold: the program's rooms with their
        sessions, and rooms of earlier imports no longer in it with none."""
        names = {r["id"]: r["name"] for r in new["rooms"]}
        languages = {r["id"]: r["names"] for r in new["rooms"]}
        sessions: dict[str, list[dict[str, Any]]] = {room: [] for room in names}
        for session in new["sessions"]:
            sessions[session["room"]].append(program.compact(session))
        touching: dict[str, list[dict[str, Any]]] = {}
        for change in changes:
            for room in {change["room"], change["old_room"]} - {None}:
                touching.setdefault(room, []).append(change)
        events = []
        for room in [*names, *(r for r in every_room if r not in names)]:
            data = {
                "room": {
                    "id": room,
                    "name": names.get(room),
                    "names": languages.get(room, {}),
                    "in_program": room in names,
                },
                "sessions": sessions.get(room, []),
                "changes": touching.get(room, [])[:MAX_CHANGES_PER_EVENT],
            }
            events.append((keys.room_channel(room), data))
        return events


def _in_program(known: set[str] | None, rooms: Iterable[str], field: str) -> None:
    """Every room named must be a valid id, and one of the program's once there is a program:
    NotFound otherwise, saying where the rooms are listed."""
    named = [keys.room_id(r) for r in rooms]
    if known is None:
        return
    for room in named:
        if room not in known:
            raise NotFound(
                f"no room {room!r} in the program (GET /api/schedule lists its rooms:"
                f" {', '.join(sorted(known)[:8])}{', ...' if len(known) > 8 else ''})",
                field=field,
            )
