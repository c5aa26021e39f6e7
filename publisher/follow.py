"""`feed schedule follow URL`: keep the program current from the conference tool's public export.

Once at start, then every `every` seconds, the export is fetched with a conditional request
(ETag / If-Modified-Since). A new version is imported through the one import path, which
publishes only what changed and holds the import lock (two followers never import at once).

The source is not ours: it may be down, slow, answer an error, or serve an HTML error page
with a 200. None of that may cost the venue its program, so a failed fetch keeps the last good
program, is logged once (and once more when the source recovers), counted, and retried at the
next turn; the follower never dies of it. Its state goes to Redis (`keys.FOLLOW`), where the
web app reads it for `/metrics` and the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson

from feed import keys
from feed.errors import Conflict, FeedError, InvalidMessage
from publisher.api import Publisher

log = logging.getLogger("publisher.follow")

MAX_FETCH_SECONDS = 20.0  # a fetch gives up after this, however long `every` is
MAX_BODY = 32 * 1024 * 1024  # as POST /api/schedule takes
STATE_GRACE = 30  # seconds the recorded state outlives a follower that stopped answering


@dataclass(slots=True)
class FollowState:
    """What the follower says of itself, in Redis for the web app (JSON)."""

    url: str
    every: float
    state: str = "starting"  # ok, failing (the source), busy (another import ran)
    last_attempt: int | None = None  # Unix ms
    last_success: int | None = None  # a fetch that gave a program, or 304
    last_import: int | None = None  # a new version imported
    failures: int = 0  # since the follower started
    failing_since: int | None = None
    error: str | None = None  # the last failure, for people
    etag: str | None = None  # the program's, after the last import
    changes: int = 0  # of the last import
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


class SourceFailed(Exception):
    """The source did not give a program this time."""


class Follower:
    def __init__(
        self,
        publisher: Publisher,
        url: str,
        *,
        every: float,
        venue_zone: str | None = None,
        title: str | None = None,
        strict: bool = False,
        timeout: float = MAX_FETCH_SECONDS,
        clock: Any = time.time,
    ) -> None:
        if not every > 0:
            raise InvalidMessage(f"--every must be a positive number of seconds, not {every}")
        if not url.startswith(("http://", "https://")):
            raise InvalidMessage(f"{url!r} is not an http:// or https:// address")
        self.pub = publisher
        self.url = url
        self.every = every
        self.venue_zone = venue_zone
        self.title = title
        self.strict = strict
        self.timeout = min(timeout, MAX_FETCH_SECONDS)
        self.clock = clock
        self.status = FollowState(url, every)
        self._validators: dict[str, str] = {}  # If-None-Match / If-Modified-Since to send
        self._digest: str | None = None  # of the last body imported
        self._pending: tuple[dict[str, str], str] = (
            {},
            "",
        )  # the fetched version's, until imported

    def _ms(self) -> int:
        return int(self.clock() * 1000)

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch now, then every `every` seconds, until `stop` is set."""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not stop.is_set():
                await self.once(http)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.every)

    async def once(self, http: aiohttp.ClientSession) -> None:
        """One turn: fetch, import when it changed, record the state. Never raises for the
        source's or Redis's faults."""
        st = self.status
        st.last_attempt = self._ms()
        try:
            body = await self._fetch(http)
            if body is not None:
                await self._import(body)
            self._succeeded()
        except Conflict as exc:
            st.state, st.error = "busy", exc.message  # another import ran: next turn
            log.info("another import is running; trying again in %s s", _seconds(self.every))
        except (SourceFailed, InvalidMessage) as exc:
            self._failed(exc.message if isinstance(exc, InvalidMessage) else str(exc))
        except FeedError as exc:  # Redis away: the program cannot be stored, try again
            self._failed(f"cannot store the program: {exc.message}")
        await self._record()

    async def _fetch(self, http: aiohttp.ClientSession) -> bytes | None:
        """The export's bytes when it changed; None when the source says it did not."""
        try:
            async with http.get(self.url, headers=self._validators) as answer:
                if answer.status == 304:
                    return None
                if answer.status != 200:
                    raise SourceFailed(f"{self.url} answered {answer.status} {answer.reason}")
                if answer.content_type == "text/html":  # a proxy's or the tool's error page
                    raise SourceFailed(f"{self.url} served an HTML page, not a program")
                if (answer.content_length or 0) > MAX_BODY:
                    raise SourceFailed(f"{self.url} sent over {MAX_BODY} bytes")
                body = await answer.content.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise SourceFailed(f"{self.url} sent over {MAX_BODY} bytes")
                validators = {}
                if etag := answer.headers.get("ETag"):
                    validators["If-None-Match"] = etag
                if modified := answer.headers.get("Last-Modified"):
                    validators["If-Modified-Since"] = modified
        except TimeoutError:
            raise SourceFailed(
                f"{self.url} did not answer within {_seconds(self.timeout)} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise SourceFailed(f"cannot fetch {self.url}: {exc or type(exc).__name__}") from None
        digest = hashlib.sha256(body).hexdigest()
        if digest == self._digest:  # a source that ignores conditional requests
            self._validators = validators
            return None
        self._pending = validators, digest
        return body

    async def _import(self, body: bytes) -> None:
        result = await self.pub.import_program(
            body,
            source=self.url,
            venue_zone=self.venue_zone,
            title=self.title,
            strict=self.strict,
        )
        # Remembered only once imported: a failed version is fetched whole again next turn.
        self._validators, self._digest = self._pending
        st = self.status
        st.last_import, st.etag, st.changes = self._ms(), result["etag"], len(result["changes"])
        report = result["report"]
        conference = result["conference"]
        log.info(
            "imported %s (%s): %d rooms, %d sessions; %d changes since the last import"
            "; %d repaired, %d skipped",
            conference["title"],
            conference["timezone"],
            result["rooms"],
            result["sessions"],
            len(result["changes"]),
            report["repaired"],
            report["skipped"],
        )

    def _succeeded(self) -> None:
        st = self.status
        if st.state == "failing":
            log.warning(
                "%s answers again, after %s", self.url, _since(st.failing_since, self._ms())
            )
        st.state, st.error, st.failing_since = "ok", None, None
        st.last_success = self._ms()

    def _failed(self, error: str) -> None:
        st = self.status
        st.failures += 1
        if st.state != "failing" or st.error != error:
            # Once per kind of failure, not at every turn: a source down for an hour is one line.
            log.warning("%s; keeping the last good program, trying again every %s s",
                        error, _seconds(self.every))  # fmt: skip
        if st.state != "failing":
            st.failing_since = self._ms()
        st.state, st.error = "failing", error

    async def _record(self) -> None:
        ttl = int(self.every * 3) + STATE_GRACE
        try:
            await self.pub.bus.remember(keys.FOLLOW, self.status.to_json(), ttl)
        except FeedError as exc:
            log.debug("cannot record the follower's state: %s", exc.message)


def _seconds(value: float) -> str:
    return f"{value:g}"


def _since(start: int | None, now: int) -> str:
    return f"{(now - (start or now)) / 1000:.0f} s"
