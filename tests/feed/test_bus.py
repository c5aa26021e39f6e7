"""The Redis adapter and the publisher API, against a real private redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from feed import keys, protocol, reducer
from feed.bus import Bus, Published, Synced, placeholder, redacted
from feed.embedded import RedisProcess, free_port
from feed.errors import ConfigError, InvalidMessage, Unavailable
from feed.models import State
from feed.protocol import Event, Position
from publisher.api import Publisher

ROOM = "room:atlas"
TS = 1_700_000_000_000


@pytest.fixture
async def bus(redis: RedisProcess) -> AsyncIterator[Bus]:
    b = Bus(redis.url)
    yield b
    await b.aclose()


@pytest.fixture
async def raw(redis: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    """A plain client, to look at and damage what the bus stores."""
    client = aioredis.Redis.from_url(redis.url)
    yield client
    await client.aclose()


def status(delay: int) -> dict[str, Any]:
    return {"status": "delayed", "delay": delay, "session": None, "moved_to": None}


async def publish_n(b: Bus, channel: str, n: int, start: Synced | None = None) -> Synced:
    """Publish `n` status events (delay = their seq) as a well-behaved publisher would."""
    known = start or await b.sync(channel)
    epoch, seq, state = known.epoch, known.seq, known.state
    for _ in range(n):
        data = status(seq + 1)
        state = reducer.apply(state, "status", data, TS + seq + 1)
        result = await b.publish(
            channel, Position(epoch, seq), kind="status", data=data, ts=TS + seq + 1, state=state
        )
        assert isinstance(result, Published)
        epoch, seq = result.epoch, result.seq
    return Synced(epoch, seq, state, [])


def unused_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


# ---- sync ----------------------------------------------------------------------------------------


async def test_reading_a_channel_nobody_published_on_writes_nothing(
    bus: Bus, raw: aioredis.Redis
) -> None:
    """Anyone may ask for any name: the answer is the initial state at seq 0 of the channel's
    placeholder epoch, and Redis is left as it was but for the data set's one epoch seed
    (issue 18: readers never write per name)."""
    seed = await bus.seed()
    before = await raw.dbsize()
    epochs = set()
    for name in (ROOM, "venue", "room:nobody-ever", "room:zz-9"):
        first = await bus.sync(name, after=Position("elsewhere", 3))
        assert (first.epoch, first.seq, first.events) == (placeholder(seed, name), 0, [])
        assert first.state == reducer.initial(name) and not first.exists
        assert await bus.sync(name) == first
        epochs.add(first.epoch)
    assert len(epochs) == 4
    assert await raw.dbsize() == before == 1
    assert await bus.channels() == []


async def test_the_first_publish_keeps_the_epoch_its_readers_were_given(
    bus: Bus, raw: aioredis.Redis
) -> None:
    start = await bus.sync(ROOM)
    state = reducer.apply(start.state, "status", status(1), TS)
    result = await bus.publish(
        ROOM, Position(start.epoch, 0), kind="status", data=status(1), ts=TS, state=state
    )
    assert result == Published(ROOM, start.epoch, 1)  # readers at (epoch, 0) carry on
    assert await raw.hget(keys.meta_key(ROOM), "epoch") == start.epoch.encode()
    assert await bus.sync(ROOM) == Synced(start.epoch, 1, state, [])
    assert await bus.channels() == [ROOM]


async def test_a_redis_that_lost_everything_never_gives_an_epoch_of_the_past(
    bus: Bus, raw: aioredis.Redis
) -> None:
    before = await publish_n(bus, ROOM, 3)
    await raw.flushall()  # the seed goes with the data
    bus.forget_seed()  # as the relay does on every new subscription
    again = await bus.sync(ROOM)
    assert again.epoch != before.epoch and again.seq == 0 and not again.exists


async def test_a_channel_lost_after_it_was_seen_moves_to_a_new_epoch(
    bus: Bus, raw: aioredis.Redis
) -> None:
    """A server knew the channel at seq 3 of its placeholder epoch; Redis lost it (an older
    append-only file): the same (epoch, seq) must never name another event."""
    known = await publish_n(bus, ROOM, 3)
    await raw.delete(keys.meta_key(ROOM), keys.log_key(ROOM))
    synced = await bus.sync(ROOM, known=Position(known.epoch, 3))
    assert synced.epoch != known.epoch and synced.seq == 0 and synced.exists


async def test_sync_of_venue_uses_its_initial_state(bus: Bus) -> None:
    assert (await bus.sync("venue")).state == reducer.initial("venue")


async def test_publish_at_the_known_position(bus: Bus, raw: aioredis.Redis) -> None:
    start = await bus.sync(ROOM)
    state = reducer.apply(start.state, "status", status(5), TS)
    result = await bus.publish(
        ROOM, Position(start.epoch, 0), kind="status", data=status(5), ts=TS, state=state
    )
    assert isinstance(result, Published) and (result.channel, result.seq) == (ROOM, 1)

    after = await bus.sync(ROOM)
    assert (after.epoch, after.seq, after.state) == (result.epoch, 1, state)
    stored = await raw.hgetall(keys.meta_key(ROOM))
    assert orjson.loads(stored[b"state"]) == state
    assert int(stored[b"seq"]) == 1


@pytest.mark.parametrize("wrong", ["stale-seq", "other-epoch", "none"])
async def test_publish_at_a_wrong_position_returns_where_the_channel_is(
    bus: Bus, wrong: str
) -> None:
    current = await publish_n(bus, ROOM, 2)
    known = {
        "stale-seq": Position(current.epoch, 1),
        "other-epoch": Position("elsewhere", 2),
        "none": None,
    }[wrong]
    result = await bus.publish(
        ROOM, known, kind="status", data=status(9), ts=TS, state={"status": "bogus"}
    )
    assert result == Synced(current.epoch, 2, current.state, [])
    assert await bus.sync(ROOM) == Synced(current.epoch, 2, current.state, [])


async def test_history_after_a_position(bus: Bus) -> None:
    current = await publish_n(bus, ROOM, 4)
    synced = await bus.sync(ROOM, after=Position(current.epoch, 1))
    assert [e.seq for e in synced.events] == [2, 3, 4]
    assert synced.events[0] == Event(ROOM, current.epoch, 2, "status", status(2), TS + 2)
    assert (synced.epoch, synced.seq, synced.state) == (current.epoch, 4, current.state)


@pytest.mark.parametrize(
    "after", [Position("elsewhere", 1), Position("same", 4), Position("same", 9)]
)
async def test_no_history_after_an_unusable_position(bus: Bus, after: Position) -> None:
    current = await publish_n(bus, ROOM, 4)
    if after.epoch == "same":
        after = Position(current.epoch, after.seq)
    assert (await bus.sync(ROOM, after=after)).events == []


async def test_history_is_trimmed(redis: RedisProcess) -> None:
    short = Bus(redis.url, history=5)
    try:
        current = await publish_n(short, ROOM, 50)
        synced = await short.sync(ROOM, after=Position(current.epoch, 1))
    finally:
        await short.aclose()
    seqs = [e.seq for e in synced.events]
    assert seqs  # at least `history` entries are kept (trimming is approximate)
    assert seqs[0] > 2
    assert len(seqs) >= 5
    assert seqs == list(range(seqs[0], 51))  # what is kept is the newest, without holes


async def test_lost_meta_key_gives_a_new_epoch(bus: Bus, raw: aioredis.Redis) -> None:
    old = await publish_n(bus, ROOM, 3)
    await raw.delete(keys.meta_key(ROOM))  # Redis lost the channel, not (yet) its log

    fresh = await bus.sync(ROOM, after=Position(old.epoch, 0))
    assert fresh.epoch != old.epoch
    assert fresh.seq == 0
    assert fresh.state == reducer.initial(ROOM)
    assert fresh.events == []
    assert await raw.exists(keys.log_key(ROOM)) == 0  # the old epoch's events are gone

    after = await publish_n(bus, ROOM, 1, fresh)
    synced = await bus.sync(ROOM, after=Position(fresh.epoch, 0))
    assert [(e.epoch, e.seq) for e in synced.events] == [(fresh.epoch, 1)]
    assert after.seq == 1


async def test_known_ahead_of_redis_moves_to_a_new_epoch_keeping_the_state(
    bus: Bus, raw: aioredis.Redis
) -> None:
    current = await publish_n(bus, ROOM, 3)
    # Redis "forgot" the last acknowledged write: it says seq 2 while we know seq 3.
    await raw.hset(keys.meta_key(ROOM), "seq", 2)

    synced = await bus.sync(ROOM, known=Position(current.epoch, 3))
    assert synced.epoch != current.epoch
    assert synced.seq == 0
    assert synced.state == current.state
    assert await raw.exists(keys.log_key(ROOM)) == 0
    assert await bus.sync(ROOM) == synced  # and it sticks


async def test_publish_with_known_ahead_also_moves_to_a_new_epoch(
    bus: Bus, raw: aioredis.Redis
) -> None:
    current = await publish_n(bus, ROOM, 3)
    await raw.hset(keys.meta_key(ROOM), "seq", 1)
    result = await bus.publish(
        ROOM, Position(current.epoch, 3), kind="status", data=status(4), ts=TS, state=current.state
    )
    assert isinstance(result, Synced)
    assert result.epoch != current.epoch
    assert (result.seq, result.state) == (0, current.state)


async def test_known_in_the_same_place_keeps_the_epoch(bus: Bus) -> None:
    current = await publish_n(bus, ROOM, 3)
    synced = await bus.sync(
        ROOM, known=Position(current.epoch, 3), after=Position(current.epoch, 2)
    )
    assert (synced.epoch, synced.seq) == (current.epoch, 3)
    assert [e.seq for e in synced.events] == [3]


async def test_unreadable_state_falls_back_to_the_initial_one(
    bus: Bus, raw: aioredis.Redis
) -> None:
    current = await publish_n(bus, ROOM, 1)
    await raw.hset(keys.meta_key(ROOM), "state", b"not json")
    synced = await bus.sync(ROOM)
    assert (synced.epoch, synced.seq, synced.state) == (current.epoch, 1, reducer.initial(ROOM))


async def test_damaged_history_entries_are_skipped(bus: Bus, raw: aioredis.Redis) -> None:
    current = await publish_n(bus, ROOM, 2)
    await raw.xadd(keys.log_key(ROOM), {"m": b"garbage"}, id="3-0")
    await raw.hset(keys.meta_key(ROOM), "seq", 3)
    synced = await bus.sync(ROOM, after=Position(current.epoch, 0))
    assert [e.seq for e in synced.events] == [1, 2]


# ---- pub/sub -------------------------------------------------------------------------------------


async def test_the_published_envelope_is_the_history_entry(bus: Bus, raw: aioredis.Redis) -> None:
    start = await bus.sync("venue")
    data: dict[str, Any] = {
        "id": "a1",
        "text": 'تنبيه: "القاعة" مغلقة\n',
        "priority": "info",
        "rooms": [],
    }
    data |= {"ts": TS, "expires_at": None}
    state = reducer.apply(start.state, "announce", data, TS)

    async with raw.pubsub() as pubsub:
        await pubsub.subscribe(keys.BUS)
        confirmed = await pubsub.get_message(timeout=5.0)
        assert confirmed is not None
        assert confirmed["type"] == "subscribe"
        result = await bus.publish(
            "venue", Position(start.epoch, 0), kind="announce", data=data, ts=TS, state=state
        )
        assert isinstance(result, Published)
        message = None
        async with asyncio.timeout(5):
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)

    assert message["channel"] == keys.BUS.encode()
    envelope: bytes = message["data"]
    entries = await raw.xrange(keys.log_key("venue"))
    assert entries == [(b"1-0", {b"m": envelope})]
    event = protocol.parse_event(envelope)
    assert event == Event("venue", result.epoch, 1, "announce", data, TS)
    assert (await bus.sync("venue", after=Position(result.epoch, 0))).events == [event]
    assert envelope == event.frame()


# ---- unavailable ---------------------------------------------------------------------------------


async def test_unreachable_redis_raises_unavailable() -> None:
    url = unused_url()
    b = Bus(url)
    try:
        with pytest.raises(Unavailable) as info:
            await b.sync(ROOM)
        assert isinstance(info.value, ConnectionError)
        assert url in info.value.message
        with pytest.raises(Unavailable):
            await b.ping()
        with pytest.raises(Unavailable):
            await b.publish(ROOM, None, kind="status", data=status(1), ts=TS, state={})
        with pytest.raises(ConnectionError):
            await b.channels()
    finally:
        await b.aclose()


def test_an_invalid_url_is_bad_input() -> None:
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        Bus("http://nowhere")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:s3cret@host:1/0",
        "redis://:s3cret?x@127.0.0.1:notaport/0",
        "redis://:s3cret/x@[::1:6379/0",
        "redis://s3cret@127.0.0.1:99999/0",
    ],
)
def test_invalid_url_messages_hide_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Bus(url)
    assert "s3cret" not in info.value.message and "***@" in info.value.message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("redis://user:p?w#x@h:1/0", "redis://user:***@h:1/0"),
        ("redis://pw@h", "redis://***@h"),
        ("redis://h:1/0", "redis://h:1/0"),
        ("unix:///var/run/redis.sock", "unix:///var/run/redis.sock"),
    ],
)
def test_redacted(url: str, shown: str) -> None:
    assert redacted(url) == shown


# ---- channels ------------------------------------------------------------------------------------


async def test_channels_lists_venue_first(bus: Bus, raw: aioredis.Redis) -> None:
    assert await bus.channels() == []
    for name in ["room:b", "venue", "room:a"]:
        await publish_n(bus, name, 1)
    await bus.sync("room:read-only")  # read, never published: not a channel of Redis
    await raw.set("unrelated", 1)
    await raw.hset("feed:{NOT A CHANNEL}:meta", "epoch", "x")  # ignored, not ours
    assert await bus.channels() == ["venue", "room:a", "room:b"]
    assert len(await bus.channels(limit=2)) == 2


# ---- the publisher -------------------------------------------------------------------------------


async def state_of(b: Bus, channel: str) -> State:
    return (await b.sync(channel)).state


async def test_publisher_status(redis: RedisProcess, bus: Bus) -> None:
    async with Publisher(redis.url, clock=lambda: TS / 1000) as pub:
        first = await pub.status("atlas", "delayed", delay=10, session="s1")
        second = await pub.status("atlas", "moved", moved_to="hall-b")
    assert first.channel == ROOM
    assert (first.seq, second.seq) == (1, 2)
    assert second.epoch == first.epoch
    assert await state_of(bus, ROOM) == {
        **reducer.initial(ROOM),
        "status": "moved",
        "moved_to": "hall-b",
    }
    history = (await bus.sync(ROOM, after=Position(first.epoch, 0))).events
    assert [(e.kind, e.data["status"], e.ts) for e in history] == [
        ("status", "delayed", TS),
        ("status", "moved", TS),
    ]


async def test_publisher_announce_and_retract_on_venue(redis: RedisProcess, bus: Bus) -> None:
    async with Publisher(redis.url, clock=lambda: TS / 1000) as pub:
        data = await pub.announce("Lunch is served", priority="important", expires_in=60)
        assert data["expires_at"] == TS + 60_000
        assert (await state_of(bus, "venue"))["announcements"] == [data]
        await pub.retract(data["id"])
    assert (await state_of(bus, "venue"))["announcements"] == []


async def test_publisher_announce_to_rooms(
    redis: RedisProcess, bus: Bus, raw: aioredis.Redis
) -> None:
    async with Publisher(redis.url, clock=lambda: TS / 1000) as pub:
        data = await pub.announce("Doors close", rooms=["hall-b", "atlas", "atlas"])
        assert data["rooms"] == ["atlas", "hall-b"]
        for channel in ("room:atlas", "room:hall-b"):
            assert (await state_of(bus, channel))["announcements"] == [data]
        assert await raw.exists(keys.meta_key("venue")) == 0  # not sent to everyone

        await pub.retract(data["id"], rooms=["atlas"])
        assert (await state_of(bus, "room:atlas"))["announcements"] == []
        assert (await state_of(bus, "room:hall-b"))["announcements"] == [data]


async def test_publisher_rejects_invalid_input_before_touching_redis(
    redis: RedisProcess, raw: aioredis.Redis
) -> None:
    async def attempts(pub: Publisher) -> None:
        calls = [
            pub.status("atlas", "sleeping"),
            pub.status("Atlas", "live"),
            pub.status("atlas", "live", delay=-1),
            pub.status("atlas", "live", moved_to="hall-b"),
            pub.announce(""),
            pub.announce("x", rooms=["ok", "Not OK"]),
            pub.announce("x", priority="urgent"),
            pub.announce("x", expires_in=0),
            pub.retract(""),
            pub.retract("abc", rooms=["BAD"]),
            pub.publish("venue", "Not A Kind", {}),
            pub.publish("venue", "note", {"blob": "x" * 70_000}),
            pub.publish("venue", "note", {"when": object()}),
        ]
        for call in calls:
            with pytest.raises(InvalidMessage):
                await call

    async with Publisher(redis.url) as pub:
        await attempts(pub)
    assert await raw.dbsize() == 0
    # Without any Redis at all, the same calls are still refused as invalid, not unavailable.
    offline = Publisher(unused_url())
    try:
        await attempts(offline)
    finally:
        await offline.aclose()


async def test_a_retried_publish_is_made_once(bus: Bus, raw: aioredis.Redis) -> None:
    start = await bus.sync(ROOM)
    state = reducer.apply(start.state, "status", status(1), TS)
    args: dict[str, Any] = {"kind": "status", "data": status(1), "ts": TS, "state": state}
    known = Position(start.epoch, 0)
    first = await bus.publish(ROOM, known, **args, change_id="c-1")
    # As if Redis ran the call but its reply was lost, and the call was sent again.
    again = await bus.publish(ROOM, known, **args, change_id="c-1")
    other = await bus.publish(ROOM, known, **args, change_id="c-2")
    assert isinstance(first, Published) and again == first
    assert isinstance(other, Synced) and other.seq == 1
    assert await raw.xlen(keys.log_key(ROOM)) == 1


async def test_publisher_on_an_unreachable_redis() -> None:
    with pytest.raises(Unavailable):
        async with Publisher(unused_url()):
            pytest.fail("entered a Publisher without a Redis")


async def test_racing_publishers_lose_nothing(redis: RedisProcess, bus: Bus) -> None:
    async with Publisher(redis.url) as one, Publisher(redis.url) as two:
        results = await asyncio.gather(
            *(one.status("atlas", "delayed", delay=i) for i in range(20)),
            *(two.status("atlas", "delayed", delay=100 + i) for i in range(20)),
        )
    assert sorted(r.seq for r in results) == list(range(1, 41))
    final = await bus.sync(ROOM, after=Position(results[0].epoch, 0))
    assert final.seq == 40
    delays = [e.data["delay"] for e in final.events]
    assert sorted(delays) == [*range(20), *range(100, 120)]  # every status is in the history
    assert final.state["delay"] == delays[-1]  # and the state is the last one's


async def test_racing_publishers_keep_every_announcement(redis: RedisProcess, bus: Bus) -> None:
    async with Publisher(redis.url) as one, Publisher(redis.url) as two:
        posted = await asyncio.gather(
            *(one.announce(f"one {i}") for i in range(20)),
            *(two.announce(f"two {i}") for i in range(20)),
        )
    final = await bus.sync("venue")
    assert final.seq == 40
    # A lost update would drop an announcement from the state computed from a stale one.
    assert {a["id"] for a in final.state["announcements"]} == {p["id"] for p in posted}


async def test_one_publisher_shared_by_many_callers_never_conflicts(
    redis: RedisProcess, bus: Bus
) -> None:
    async with Publisher(redis.url) as pub:
        results = await asyncio.gather(
            *(pub.status("atlas", "delayed", delay=i) for i in range(80)), return_exceptions=True
        )
    assert [r for r in results if not isinstance(r, Published)] == []
    assert (await bus.sync(ROOM)).seq == 80
