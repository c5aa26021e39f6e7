"""The Redis adapter: the only module that talks to Redis.

- `sync` reads a channel's (epoch, seq, state) and the history after a position, atomically;
- `publish` appends one event and updates the state in one atomic call, if the caller's known
  position is still current (optimistic concurrency: the reducer stays in Python);
- `listen` holds the process's single pub/sub subscription, reconnects with backoff, and reports
  every time the subscription (re)becomes live, so the caller can catch up from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, TypeGuard, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError

from feed import keys, protocol, reducer, sentinel
from feed.errors import ConfigError, InvalidMessage, Unavailable, raise_if_cancelled
from feed.models import State
from feed.probe import PROBE_TIMEOUT, Probe
from feed.protocol import Event, Position

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCRIPT = resources.files("feed").joinpath("channel.lua").read_text(encoding="utf-8")
MAX_HISTORY_READ = 10_000


# Redis's words for "not a primary to write to": a replica (READONLY), or an old primary left
# without its replicas by a failover, refusing writes by its min-replicas-to-write (NOREPLICAS).
# Alone, or quoted in a script's error.
_NOT_PRIMARY = ("READONLY", "NOREPLICAS")
PRIMARY_CHECK_EVERY = 1.0  # seconds: under Sentinel, how often a publisher asks who is primary
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)([^@]*)@(?=[^@]*$)", re.IGNORECASE)
URL_FORMS = (
    "redis://[[user]:password@]host[:port][/db], rediss://... (TLS), unix:///path or"
    f" {sentinel.FORM}"
)
# How long a publish waits for FEED_REDIS_MIN_REPLICAS replicas to confirm it (WAIT) before it
# is refused: replicas on a venue's network answer in milliseconds; a second is a lost replica.
WAIT_TIMEOUT_MS = 1000


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs. Whatever the password holds (`/`,
    `?`, `#`, `@`...), everything between the scheme and the last `@` is hidden; nothing is
    parsed, so nothing can fail."""
    return _USERINFO.sub(lambda m: m.group(1) + _hide(m.group(2)) + "@", url)


def _hide(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    return f"{user}:***" if colon else "***"  # a name alone may be a password in disguise


def check_url(url: str) -> str:
    """A Redis URL redis-py can use, or ConfigError saying so (without its password)."""
    if sentinel.is_sentinel(url):
        try:
            sentinel.parse(url)
        except ConfigError as exc:
            raise ConfigError(f"invalid Redis URL {redacted(url)!r}: {exc.message}") from None
        return url
    try:
        aioredis.connection.parse_url(url)
    except (ValueError, TypeError):
        raise ConfigError(f"invalid Redis URL {redacted(url)!r}: use {URL_FORMS}") from None
    return url


def default_min_replicas(url: str) -> int:
    """Replicas a publish waits for when FEED_REDIS_MIN_REPLICAS is not set: one under
    Sentinel (a change is acknowledged only once it would survive a failover), none with one
    Redis (there is no replica to wait for; its append-only file is what keeps changes)."""
    return 1 if sentinel.is_sentinel(url) else 0


class _Client:
    """A redis-py client for one of our URLs, with what must be closed beside it."""

    def __init__(self, url: str, **options: Any) -> None:
        self.sentinels: Sentinel | None = None
        if not sentinel.is_sentinel(url):
            self.redis: aioredis.Redis = aioredis.Redis.from_url(url, **options)
            return
        parts = sentinel.parse(url)
        # Sentinels are asked briefly, one after the other: one that is down must not hold up
        # finding the primary through the others.
        self.sentinels = Sentinel(
            list(parts.sentinels),
            sentinel_kwargs={"socket_connect_timeout": 1, "socket_timeout": 1},
        )
        # Every connection of this pool asks the sentinels for the primary when it connects,
        # and redis-py drops one that meets a READONLY (a demoted primary): the retry of the
        # command then reaches the new primary.
        self.redis = self.sentinels.master_for(
            parts.service,
            db=parts.db,
            username=parts.username,
            password=parts.password,
            **options,
        )

    async def primary(self) -> tuple[str, int] | None:
        """Under Sentinel, the primary's address as the sentinels tell it now (pooled idle
        connections to another server are dropped on the way); None otherwise."""
        if self.sentinels is None:
            return None
        pool = self.redis.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]
        return str(host), int(port)

    async def aclose(self) -> None:
        client: _Closable = self.redis
        with contextlib.suppress(RedisError, OSError):
            await asyncio.wait_for(client.aclose(), PROBE_TIMEOUT)
        if self.sentinels is not None:  # its connections to the sentinels are its own
            with contextlib.suppress(RedisError, OSError):
                await asyncio.wait_for(self.sentinels.aclose(), PROBE_TIMEOUT)


def new_epoch() -> str:
    return f"{int(time.time()):x}{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Synced:
    epoch: str
    seq: int
    state: State
    events: list[Event]
    # Whether Redis holds the channel: nobody published on it yet gives its initial state at
    # seq 0 of its placeholder epoch, and nothing is written (issue 18: readers never write).
    exists: bool = True


def placeholder(seed: str, channel: str) -> str:
    """The epoch a channel nobody published on has, in the data set of `seed`: its readers and
    its first publisher agree on it without writing anything."""
    return hashlib.sha256(f"{seed} {channel}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Published:
    channel: str
    epoch: str
    seq: int


class Bus:
    def __init__(self, url: str, *, history: int = 1000, min_replicas: int | None = None) -> None:
        self.url = url
        self.history = history
        # Replicas that must confirm a publish (WAIT) before it counts as done; None: the
        # default for the URL (default_min_replicas).
        self.min_replicas = default_min_replicas(url) if min_replicas is None else min_replicas
        check_url(url)
        try:
            self._client = _Client(
                url,
                socket_connect_timeout=3,
                socket_timeout=10,
                # A pooled connection may be stale after a Redis restart or a failover: one
                # immediate retry on a fresh connection hides that; anything longer is the
                # caller's backoff to decide.
                retry=Retry(NoBackoff(), 1),
            )
        except (ValueError, TypeError):
            # Not redis-py's words: they may quote the password.
            raise ConfigError(f"invalid Redis URL {redacted(url)!r}: use {URL_FORMS}") from None
        self._redis = self._client.redis
        self._primary_checked = -PRIMARY_CHECK_EVERY
        self._script = self._redis.register_script(_SCRIPT)
        self._seed: str | None = None  # keys.EPOCH_SEED as last read, for reads

    async def seed(self, *, fresh: bool = False) -> str:
        """The data set's epoch seed, made by the first process that needs it (one key, once).
        Reads use the last value read (`forget_seed` after a reconnect); publishes read it every
        time, so a Redis that lost everything never gets an epoch of the past again."""
        if self._seed is not None and not fresh:
            return self._seed
        value = await self._do(self._redis.get(keys.EPOCH_SEED))
        if value is None:
            try:
                await self._redis.set(keys.EPOCH_SEED, secrets.token_hex(8), nx=True)
            except (RedisError, OSError) as exc:
                raise self._unavailable(exc) from exc
            value = await self._do(self._redis.get(keys.EPOCH_SEED))
            if value is None:
                raise Unavailable("Redis did not keep the epoch seed")
        self._seed = _text(value)
        return self._seed

    def forget_seed(self) -> None:
        """Read the seed again at the next read (Redis may have restarted without its data)."""
        self._seed = None

    async def aclose(self) -> None:
        await self._client.aclose()

    def _unavailable(self, exc: BaseException) -> Unavailable:
        return Unavailable(f"cannot use Redis at {redacted(self.url)}: {exc}")

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def _run(self, channel: str, args: list[Any], *, confirm: bool = False) -> list[Any]:
        """One call of the channel script. With `confirm`, a change it made (or had made) is
        done only once `min_replicas` replicas confirm they have it (WAIT)."""
        script_keys = [keys.meta_key(channel), keys.log_key(channel)]
        if confirm:
            await self._check_primary()
        for attempt in (1, 2):
            try:
                if confirm and self.min_replicas > 0:
                    reply = await self._run_confirmed(channel, script_keys, args)
                else:
                    reply = await self._script(keys=script_keys, args=args)
            except ResponseError as exc:
                if any(word in str(exc) for word in _NOT_PRIMARY) and attempt == 1:
                    # A replica answered: the old primary, demoted by a failover, or one whose
                    # address a proxy still hands out. Connections made from now on ask for
                    # the current primary (through the sentinels, or the proxy) once more.
                    log.info("Redis at %s is no primary now; reconnecting", redacted(self.url))
                    await self._redis.connection_pool.disconnect()
                    continue
                raise self._unavailable(exc) from exc
            except (RedisError, OSError) as exc:
                raise self._unavailable(exc) from exc
            if not isinstance(reply, list) or len(reply) < 3:
                raise Unavailable(f"unexpected reply from Redis for {channel}: {reply!r:.200}")
            return reply
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _check_primary(self) -> None:
        """Under Sentinel, before a publish (at most once a second): a failover may have made
        another server primary while the old one still runs, writable until the sentinels
        demote it (seconds later); pooled connections to it are dropped here instead."""
        now = time.monotonic()
        if self._client.sentinels is None or now - self._primary_checked < PRIMARY_CHECK_EVERY:
            return
        self._primary_checked = now
        with contextlib.suppress(RedisError, OSError):  # no answer: the publish will say
            await self._client.primary()

    async def _run_confirmed(
        self, channel: str, script_keys: list[str], args: list[Any]
    ) -> list[Any]:
        # WAIT counts the replicas that have every write made on its own connection: the
        # script and the WAIT must share one. A change already made (a retry) is written again
        # by the script (the same value), so that WAIT covers it as well.
        async with self._redis.client() as conn:
            reply = await self._script(keys=script_keys, args=args, client=conn)
            if not isinstance(reply, list) or not reply or int(reply[0]) not in (1, 2):
                return reply  # type: ignore[no-any-return]
            confirmed = int(await conn.wait(self.min_replicas, WAIT_TIMEOUT_MS))
        if confirmed < self.min_replicas:
            # Perhaps an old primary that a failover left without replicas: the retry asks
            # again which server is the primary.
            await self._redis.connection_pool.disconnect()
            self._primary_checked = -PRIMARY_CHECK_EVERY
            raise Unavailable(
                f"{channel}: the change reached the Redis primary, but {confirmed} of the"
                f" {self.min_replicas} replica(s) required (FEED_REDIS_MIN_REPLICAS) confirmed"
                f" it within {WAIT_TIMEOUT_MS} ms; it may be lost in a failover: retry it"
                " (with the same Idempotency-Key, it is made once)"
            )
        return reply

    async def refuses_writes(self, key: str, ttl_ms: int) -> str | None:
        """Whether Redis takes a write now: None when it does, else its own words (out of memory,
        a read-only replica, a failed save...). Unavailable when it cannot be reached at all.
        The write is one small expiring key per server."""
        try:
            await self._redis.set(key, "1", px=ttl_ms)
        except ResponseError as exc:
            why = {OutOfMemoryError: "out of memory", ReadOnlyError: "a read-only replica"}
            return f"{why.get(type(exc), type(exc).__name__)}: {exc}"
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return None

    async def eviction_policy(self) -> str | None:
        """Redis's maxmemory-policy, or None when Redis does not say (CONFIG may be forbidden)."""
        try:
            reply = await self._redis.config_get("maxmemory-policy")
        except (RedisError, OSError):
            return None
        for key, value in dict(reply).items():
            if _text(key) == "maxmemory-policy":
                return _text(value)
        return None

    # ---- venue-wide records: program, tokens, announcements, limits --------------------------

    async def _do(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def program(self) -> tuple[bytes | None, str | None, dict[str, str]]:
        """The stored program (JSON bytes), its ETag, and the room name -> id map."""
        raw, etag, rooms = await self._do(
            self._redis.hmget(keys.PROGRAM, ["json", "etag", "rooms"])
        )
        mapping: dict[str, str] = orjson.loads(rooms) if rooms else {}
        return _bytes(raw), _text(etag) if etag else None, mapping

    async def save_program(
        self,
        raw: bytes,
        etag: str,
        rooms: dict[str, str],
        current: list[str],
        zone: str | None = None,
    ) -> None:
        """Store a program: its JSON, ETag, every room name -> id ever imported (so ids stay
        stable), the ids of the rooms it has now, and the zone it was read in (on its own, so
        that every server can read it without the whole program)."""
        await self._do(
            self._redis.hset(
                keys.PROGRAM,
                mapping={
                    "json": raw,
                    "etag": etag,
                    "rooms": orjson.dumps(rooms),
                    "current": orjson.dumps(current),
                    "zone": zone or "",  # empty: a program read in no named zone
                },
            )
        )

    async def program_etag(self) -> str | None:
        """The stored program's ETag alone; None while none is imported."""
        etag = await self._do(self._redis.hget(keys.PROGRAM, "etag"))
        return _text(etag) if etag else None

    async def program_rooms(self) -> set[str] | None:
        """The room ids of the imported program; None while none is imported."""
        raw = await self._do(self._redis.hget(keys.PROGRAM, "current"))
        return set(orjson.loads(raw)) if raw else None

    async def program_zone(self) -> str | None:
        """The IANA zone the imported program was read in; None while none is imported."""
        zone = await self._do(self._redis.hget(keys.PROGRAM, "zone"))
        if zone:
            return _text(zone)
        # A program stored before the zone had a field of its own: read it from the JSON.
        raw = await self._do(self._redis.hget(keys.PROGRAM, "json"))
        if not raw:
            return None
        try:
            named = orjson.loads(raw)["conference"]["timezone"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        return named if isinstance(named, str) else None

    async def token(self, token_id: str) -> dict[str, Any] | None:
        raw = await self._do(self._redis.hget(keys.TOKENS, token_id))
        return orjson.loads(raw) if raw else None

    async def tokens(self) -> list[dict[str, Any]]:
        raw = await self._do(self._redis.hgetall(keys.TOKENS))
        return sorted((orjson.loads(v) for v in raw.values()), key=lambda t: t["created"])

    async def save_token(self, record: dict[str, Any]) -> bool:
        """Store a new token's record; False if its id is already taken (never overwritten)."""
        return bool(
            await self._do(self._redis.hsetnx(keys.TOKENS, record["id"], orjson.dumps(record)))
        )

    async def delete_token(self, token_id: str) -> bool:
        return bool(await self._do(self._redis.hdel(keys.TOKENS, token_id)))

    async def hit(self, key: str, ttl: int) -> int:
        """Count one more hit on a counter that expires `ttl` seconds after its first."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(key, 0, ex=ttl, nx=True)  # not EXPIRE NX: that needs Redis 7
        pipe.incr(key)
        _, count = await self._do(pipe.execute())
        return int(count)

    async def remembered(self, key: str) -> bytes | None:
        return _bytes(await self._do(self._redis.get(key)))

    async def remember(self, key: str, value: bytes, ttl: int, *, first: bool = False) -> bool:
        """Store `value` under `key` for `ttl` seconds; with `first`, only if nothing is there.
        Returns whether it was stored."""
        return bool(await self._do(self._redis.set(key, value, ex=ttl, nx=first)))

    async def forget(self, key: str) -> None:
        await self._do(self._redis.delete(key))

    async def record_announcement(
        self,
        announcement_id: str,
        channels: list[str],
        expires_at: int | None,
        *,
        previous: Sequence[str] = (),
    ) -> None:
        """Where an announcement is (for its retraction), and when it expires. `previous` are
        the channels of the version it replaces, whose expiry entries go."""
        pipe = self._redis.pipeline(transaction=True)
        if previous:
            pipe.zrem(keys.EXPIRIES, *(f"{ch} {announcement_id}" for ch in previous))
        record = {"channels": channels, "expires_at": expires_at}
        pipe.hset(keys.ANNOUNCEMENTS, announcement_id, orjson.dumps(record))
        if expires_at is not None:
            pipe.zadd(keys.EXPIRIES, {f"{ch} {announcement_id}": expires_at for ch in channels})
        await self._do(pipe.execute())

    async def announcement(self, announcement_id: str) -> dict[str, Any] | None:
        raw = await self._do(self._redis.hget(keys.ANNOUNCEMENTS, announcement_id))
        return orjson.loads(raw) if raw else None

    async def forget_announcement(self, announcement_id: str, channels: list[str]) -> None:
        """The announcement is gone from these channels; its record goes with the last one."""
        record = await self.announcement(announcement_id)
        left = [ch for ch in (record or {}).get("channels", []) if ch not in channels]
        pipe = self._redis.pipeline(transaction=True)
        if left and record is not None:
            pipe.hset(
                keys.ANNOUNCEMENTS, announcement_id, orjson.dumps({**record, "channels": left})
            )
        else:
            pipe.hdel(keys.ANNOUNCEMENTS, announcement_id)
        pipe.zrem(keys.EXPIRIES, *(f"{ch} {announcement_id}" for ch in channels))
        await self._do(pipe.execute())

    async def due_expiries(self, now_ms: int, limit: int = 100) -> list[tuple[str, str]]:
        """(channel, announcement id) pairs whose expiry has come."""
        members = await self._do(
            self._redis.zrangebyscore(keys.EXPIRIES, "-inf", now_ms, start=0, num=limit)
        )
        return [tuple(_text(m).split(" ", 1)) for m in members]  # type: ignore[misc]

    async def claim_expiry(self, channel: str, announcement_id: str) -> bool:
        """Take one expiry for this process; with several servers exactly one gets it."""
        return bool(await self._do(self._redis.zrem(keys.EXPIRIES, f"{channel} {announcement_id}")))

    async def calendar(self) -> dict[str, dict[str, Any]]:
        """Every session ever imported, with its calendar SEQUENCE (feed.calendar)."""
        raw = await self._do(self._redis.hgetall(keys.CALENDAR))
        entries = {}
        for key, value in raw.items():
            with contextlib.suppress(orjson.JSONDecodeError):
                entry = orjson.loads(value)
                if isinstance(entry, dict) and isinstance(entry.get("session"), dict):
                    entries[_text(key)] = entry
        return entries

    async def save_calendar(self, updates: dict[str, dict[str, Any]]) -> None:
        mapping = {sid: orjson.dumps(entry) for sid, entry in updates.items()}
        await self._do(self._redis.hset(keys.CALENDAR, mapping=mapping))  # type: ignore[arg-type]

    # ---- who is watching ------------------------------------------------------------------

    async def report_presence(
        self, server_id: str, counts: dict[str, int], screens: dict[str, bytes], ttl: int
    ) -> None:
        """This server's connections by "<channel>|<kind>" (gone after `ttl` seconds unless
        reported again), and the records of the named screens connected here."""
        key = keys.presence_key(server_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key)
        if counts:
            pipe.hset(key, mapping=counts)  # type: ignore[arg-type]  # redis-py: str -> int is fine
            pipe.expire(key, ttl)
        if screens:
            pipe.hset(keys.SCREENS, mapping=screens)  # type: ignore[arg-type]
        await self._do(pipe.execute())

    async def presence(self) -> dict[str, int]:
        """Every live server's counts, summed: {"<channel>|<kind>": connections}."""
        total: dict[str, int] = {}
        try:
            async for key in self._redis.scan_iter(match=keys.PRESENCE_PREFIX + "*", count=100):
                for field, value in (await self._redis.hgetall(key)).items():
                    name = _text(field)
                    total[name] = total.get(name, 0) + int(value)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return total

    async def screens(self) -> list[dict[str, Any]]:
        raw = await self._do(self._redis.hgetall(keys.SCREENS))
        found = []
        for value in raw.values():
            with contextlib.suppress(orjson.JSONDecodeError):
                record = orjson.loads(value)
                if isinstance(record, dict) and isinstance(record.get("name"), str):
                    found.append(record)
        return sorted(found, key=lambda r: str(r["name"]))

    async def forget_screens(self, names: list[str]) -> None:
        await self._do(self._redis.hdel(keys.SCREENS, *names))

    async def receipt(self, announcement_id: str, screen: str, at_ms: int, ttl: int) -> None:
        key = keys.receipts_key(announcement_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(key, screen, at_ms)  # the first time it was on display
        pipe.expire(key, ttl)
        await self._do(pipe.execute())

    async def receipts(self, announcement_id: str) -> dict[str, int]:
        raw = await self._do(self._redis.hgetall(keys.receipts_key(announcement_id)))
        return {_text(k): int(v) for k, v in raw.items()}

    async def channels(self, limit: int = 10_000) -> list[str]:
        """The channels Redis holds, sorted (`venue` first), at most `limit` of them."""
        found: set[str] = set()
        try:
            async for key in self._redis.scan_iter(match=keys.META_PATTERN, count=500):
                name = keys.channel_of_meta(_text(key))
                with contextlib.suppress(InvalidMessage):
                    if name is not None:
                        found.add(keys.channel(name))
                if len(found) >= limit:
                    break
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return sorted(found, key=lambda c: (c != keys.VENUE, c))

    @staticmethod
    def _known(known: Position | None) -> list[Any]:
        return [known.epoch, known.seq] if known else ["", -1]

    async def sync(
        self, channel: str, *, known: Position | None = None, after: Position | None = None
    ) -> Synced:
        """The channel as Redis has it now, with the events after `after` while history has them.

        `known` is the caller's own trusted position: if Redis is behind it in the same epoch,
        Redis lost data and the channel moves to a new epoch. Never pass a client's position.
        """
        after_args = [after.epoch, after.seq] if after else ["", -1]
        reply = await self._run(
            channel,
            [
                "sync",
                new_epoch(),
                orjson.dumps(reducer.initial(channel)),
                *self._known(known),
                *after_args,
                MAX_HISTORY_READ,
                placeholder(await self.seed(), channel),
            ],
        )
        epoch, seq, state = _text(reply[0]), int(reply[1]), _state(channel, reply[2])
        exists = len(reply) < 4 or int(reply[3]) == 1
        events = []
        for raw in reply[4:]:
            try:
                events.append(protocol.parse_event(raw))
            except InvalidMessage as exc:
                log.warning("skipping a damaged history entry of %s: %s", channel, exc)
        return Synced(epoch, seq, state, events, exists)

    async def publish(
        self,
        channel: str,
        known: Position | None,
        *,
        kind: str,
        data: Any,
        ts: int,
        state: State,
        change_id: str | None = None,
    ) -> Published | Synced:
        """Publish one event if `known` is still the channel's position; else return where the
        channel stands now (`Synced` without events) so the caller can recompute and retry.

        `change_id` identifies this change across retries: if Redis ran the call but its reply
        was lost, the retry finds the change already made and does not make it twice."""
        head, middle, tail = protocol.envelope_parts(channel, kind, data, ts)
        reply = await self._run(
            channel,
            confirm=True,
            args=[
                "publish",
                new_epoch(),
                orjson.dumps(reducer.initial(channel)),
                *self._known(known),
                orjson.dumps(state),
                head,
                middle,
                tail,
                self.history,
                keys.BUS,
                change_id or secrets.token_hex(8),
                placeholder(await self.seed(fresh=True), channel),
            ],
        )
        if int(reply[0]) in (1, 2):
            return Published(channel, _text(reply[1]), int(reply[2]))
        return Synced(_text(reply[1]), int(reply[2]), _state(channel, reply[3]), [])

    async def listen(
        self,
        on_live: Callable[[], None],
        on_down: Callable[[str], None],
        on_message: Callable[[bytes], None],
    ) -> None:
        """Hold the subscription to the bus until cancelled.

        `on_live` runs every time Redis confirms the subscription: the first time and after every
        reconnect, including redis-py's own silent ones, which would otherwise hide a gap.
        `on_down` runs when the connection is lost; reconnection uses backoff with jitter.

        An open TCP connection proves little: a stalled network, or a proxy that lost the
        subscription, keeps it open while nothing arrives. So every few seconds a probe is
        published, from another connection, to a channel only this subscription listens to;
        if it does not come back through the subscription in time, the subscription is taken
        for dead and made again (and `on_live` then catches up what was missed).
        """
        probe_channel = keys.probe(secrets.token_hex(8))
        backoff = 0.1
        while True:
            # retries=0: a broken connection must surface here, where it is reported. Made
            # anew each time: under Sentinel, it connects to the primary of this moment.
            made = _Client(
                self.url,
                socket_connect_timeout=3,
                socket_timeout=PROBE_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            client = made.redis
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(keys.BUS, probe_channel)
                probe = Probe.starting(time.monotonic())
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    raise_if_cancelled()  # redis-py may swallow a cancellation while it reads
                    now = time.monotonic()
                    if msg is not None:
                        probe.heard(now)
                        channel = _text(msg["channel"])
                        if channel == probe_channel:
                            if msg["type"] == "message":
                                probe.back(_text(msg["data"]))
                        elif msg["type"] == "subscribe":
                            backoff = 0.1
                            on_live()
                        elif msg["type"] == "message":
                            on_message(msg["data"])
                    if probe.dead(now):
                        raise TimeoutError(
                            f"a probe did not come back through the subscription within"
                            f" {PROBE_TIMEOUT:.0f} s"
                        )
                    if probe.sent is None and now >= probe.next_at:
                        await self._still_on_primary(made, pubsub)
                    payload = probe.due(now)
                    if payload is not None:
                        await asyncio.wait_for(
                            client.publish(probe_channel, payload), PROBE_TIMEOUT
                        )
            except (RedisError, OSError) as exc:
                raise_if_cancelled(exc)
                on_down(f"{type(exc).__name__}: {exc}")
            finally:
                # Closing a connection to a Redis that is gone may fail or hang; that must not
                # hide why, nor keep us from reconnecting.
                closable: _Closable = pubsub
                with contextlib.suppress(RedisError, OSError):
                    await asyncio.wait_for(closable.aclose(), PROBE_TIMEOUT)
                await made.aclose()
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 5.0)

    async def _still_on_primary(self, made: _Client, pubsub: Any) -> None:
        """Under Sentinel: a subscription to a server that is no longer the primary (a failover
        happened while it still runs) hears the old primary's events, not the new one's. The
        sentinels are asked with each probe; another answer means subscribing again."""
        try:
            primary = await asyncio.wait_for(made.primary(), PROBE_TIMEOUT)
        except (RedisError, OSError, TimeoutError):
            return  # the sentinels do not answer: the probe still tells whether events flow
        connection = pubsub.connection
        if primary is None or connection is None:
            return
        if (str(connection.host), int(connection.port)) != primary:
            raise ConnectionError(
                f"the primary is now {primary[0]}:{primary[1]}; subscribing there"
            )


class _Closable(Protocol):
    # redis-py annotated `aclose` only in later releases; through this protocol the call is
    # typed whichever release is installed, so mypy strict passes on every version we accept.
    async def aclose(self) -> None: ...


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _state(channel: str, raw: Any) -> State:
    """The stored state, or the initial one if what Redis holds is not a state at all."""
    try:
        state = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        state = None
    if not _stored(state):
        log.warning("state of %s in Redis is unreadable; using the initial state", channel)
        return reducer.initial(channel)
    return state


def _stored(value: object) -> TypeGuard[State]:
    """Whether a state read from Redis is taken as one: any JSON object is. `publish` stores
    what the reducer made, and the reducer reads every field it uses with a check of its own
    (a damaged or foreign one only weighs on the fields it damaged)."""
    return isinstance(value, dict)
