"""The publishing side's one path: an intent becomes a validated change and one atomic publish.

    async with Publisher(redis_url) as pub:
        await pub.status("atlas", "delayed", delay=10)
        await pub.announce("Keynote moved to Atlas", rooms=["atlas"], priority="important")

Each call returns once the change is in Redis (and on its way to every web process), and raises
`InvalidMessage` on bad input or `Unavailable` when Redis cannot be reached.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from feed import keys, models, reducer
from feed.bus import Bus, Published, Synced
from feed.errors import Conflict, InvalidMessage
from feed.models import Kind
from feed.protocol import Position

MAX_ATTEMPTS = 50


class Publisher:
    def __init__(
        self, redis_url: str, *, history: int = 1000, clock: Callable[[], float] = time.time
    ) -> None:
        self._bus = Bus(redis_url, history=history)
        self._clock = clock
        # Where each channel stood after our last publish: usually still true, which makes a
        # publish one round trip. When another publisher moved it, Redis says so and we retry.
        self._known: dict[str, Synced] = {}
        # Concurrent calls on one Publisher take turns per channel, so only other processes can
        # make a publish retry.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def __aenter__(self) -> Publisher:
        try:
            await self._bus.ping()
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

    async def publish(self, channel: str, kind: str, data: Any) -> Published:
        """Publish one event on one channel; the reducer computes the state stored beside it."""
        channel = keys.channel(channel)
        models.event(kind, data)
        async with self._locks[channel]:
            return await self._publish(channel, kind, data)

    async def _publish(self, channel: str, kind: str, data: Any) -> Published:
        ts = self._now_ms()
        change_id = secrets.token_hex(8)
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
    ) -> Published:
        """Set a room's status (any status may follow any other)."""
        data = models.status_data(status, delay=delay, session=session, moved_to=moved_to)
        return await self.publish(keys.room_channel(room), Kind.STATUS, data)

    async def announce(
        self,
        text: str,
        *,
        rooms: Iterable[str] = (),
        priority: str = models.Priority.INFO,
        expires_in: float | None = None,
        announcement_id: str | None = None,
    ) -> dict[str, Any]:
        """Post an announcement to the named rooms, or to everyone (`venue`) when none is named.

        `expires_in` is in seconds. Returns the announcement, with its `id` for a retraction.
        Posting again with the same `announcement_id` replaces it (in every channel it reaches),
        which makes retrying a post that failed halfway through its rooms safe.
        """
        ts = self._now_ms()
        if expires_in is not None and expires_in <= 0:
            raise InvalidMessage("expires_in must be a positive number of seconds")
        expires_at = ts + int(expires_in * 1000) if expires_in is not None else None
        room_list = list(rooms)
        data = models.announcement(
            text,
            rooms=room_list,
            priority=priority,
            ts=ts,
            expires_at=expires_at,
            announcement_id=announcement_id,
        )
        for channel in models.announcement_channels(data["rooms"]):
            await self.publish(channel, Kind.ANNOUNCE, data)
        return data

    async def retract(self, announcement_id: str, *, rooms: Iterable[str] = ()) -> None:
        """Withdraw an announcement from the channels it was posted to."""
        if not announcement_id:
            raise InvalidMessage("give the id of the announcement to retract")
        for channel in models.announcement_channels(sorted({keys.room_id(r) for r in rooms})):
            await self.publish(channel, Kind.RETRACT, {"id": announcement_id})
