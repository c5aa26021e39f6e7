"""Property-based tests: whatever a client, Redis or a caller hands the protocol parsers and the
validators, they return a well-formed value or raise the project's own error (a `FeedError` with
a message), never a stray KeyError, TypeError, RecursionError...

The inputs go past what JSON usually holds: integers with thousands of digits, nesting deeper than
the parsers allow, lone surrogates, NaN. Examples found by these tests are pinned with `@example`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feed import keys, models, protocol
from feed.models import MAX_DELAY_MINUTES, MAX_TEXT, Kind, Priority, Status
from feed.protocol import (
    MAX_CHANNELS_PER_CONNECTION,
    MAX_EPOCH,
    Event,
    Ping,
    Position,
    Subscribe,
    Unsubscribe,
)
from tests.ours import ours

# Each property runs `max_examples` inputs (and its `@example`s); the file runs in about ten
# seconds. No example database (and Hypothesis's caches in a temporary directory): nothing is
# written under the repository.
FUZZ = settings(max_examples=300, deadline=None, database=None)


# ---- values ----------------------------------------------------------------------------------


class Raw(str):
    """JSON text inserted as is by `encode`: nesting deeper than `json.dumps` can write."""


def encode(value: Any) -> str:
    """JSON text for `value`, with `Raw` parts inserted verbatim."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + encode(v) for k, v in value.items()) + "}"
    return json.dumps(value)


def nested(depth: int, leaf: Any = None) -> Any:
    """`depth` lists, one inside the other (built without recursion)."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def deep_raw(depth: int, kind: int) -> Raw:
    if kind == 0:
        return Raw("[" * depth + "]" * depth)
    if kind == 1:
        return Raw('{"a":' * depth + "1" + "}" * depth)
    return Raw('[{"type":' * depth + '"x"' + "}]" * depth)


# orjson parses at most 1024 levels; `repr` gives up at about 1000, less the frames already on the
# stack. Both sides of both limits.
DEPTHS = st.integers(min_value=900, max_value=1030)
DEEP_RAW = st.builds(deep_raw, DEPTHS, st.integers(0, 2))
DEEP_LISTS = st.builds(nested, DEPTHS)

SURROGATES = st.characters(categories=["Cs"])
# Up to 4300 digits: what `json.dumps` and `str()` still write (sys.get_int_max_str_digits).
HUGE_JSON_INTS = st.builds(
    lambda digits, sign: sign * (10**digits - 1), st.integers(19, 4300), st.sampled_from([1, -1])
)
# Past it: an int that `repr` refuses, as only a Python caller can pass.
HUGE_INTS = st.builds(
    lambda digits, sign: sign * 10**digits, st.integers(19, 5000), st.sampled_from([1, -1])
)
INTS = st.integers() | st.integers(-(2**64) - 2, 2**64 + 2)


def json_values(leaves: st.SearchStrategy[Any], keys_: st.SearchStrategy[str]) -> Any:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys_, inner, max_size=5),
        max_leaves=20,
    )


# What JSON text can hold, for the parsers: written with `encode`, so ints may be huge.
WIRE_LEAVES = (
    st.none()
    | st.booleans()
    | INTS
    | HUGE_JSON_INTS
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
WIRE_JSON = json_values(WIRE_LEAVES, st.text(max_size=10))
WIRE_JSON_DEEP = WIRE_JSON | json_values(WIRE_LEAVES | DEEP_RAW, st.text(max_size=10))
# A field's wrong value: of the wrong type, nested past the limits, or anything at all.
ODD = st.booleans() | DEEP_RAW | WIRE_JSON_DEEP

# What a Python caller can pass a validator: everything above, and what JSON cannot hold.
ANY_TEXT = st.text(st.characters() | SURROGATES, max_size=30)
ANY_LEAVES = (
    st.none()
    | st.booleans()
    | INTS
    | HUGE_INTS
    | st.floats()
    | ANY_TEXT
    | st.sampled_from([*Status, *Priority, *Kind])
)
ANY = json_values(ANY_LEAVES, ANY_TEXT) | DEEP_LISTS | st.lists(DEEP_LISTS, max_size=2)

ROOM_IDS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True)
CHANNELS = st.just(keys.VENUE) | ROOM_IDS.map(lambda r: keys.ROOM_PREFIX + r)
NEAR_CHANNELS = (
    CHANNELS
    | st.sampled_from(
        ["", "room:", "Venue", "venue ", "room:A", "room:-a", "room:a\n", "room:é", "room:a:b"]
    )
    | st.just("room:" + "a" * 65)
    | st.text(max_size=12).map(lambda t: keys.ROOM_PREFIX + t)
    | st.text(max_size=12)
)
MANY_CHANNELS = st.integers(250, 260).map(lambda n: [f"room:r{i}" for i in range(n)])
MANY_ROOMS = st.integers(498, 502).map(lambda n: [f"r{i}" for i in range(n)])
EPOCHS = st.from_regex(r"[0-9a-f]{1,16}", fullmatch=True)  # what Bus.new_epoch makes


def check_channels(channels: tuple[str, ...]) -> None:
    assert isinstance(channels, tuple)
    assert 0 < len(channels) <= MAX_CHANNELS_PER_CONNECTION
    assert len(set(channels)) == len(channels)
    for ch in channels:
        assert keys.channel(ch) == ch


def check_client(msg: object) -> None:
    """What a successful parse_client returns is well formed."""
    if not isinstance(msg, Subscribe | Unsubscribe):  # Ping, and messages about one announcement
        assert type(msg).__module__ == protocol.__name__
        aid = getattr(msg, "id", None)
        assert aid is None or (isinstance(aid, str) and 0 < len(aid) <= models.MAX_ANNOUNCEMENT_ID)
        return
    check_channels(msg.channels)
    if isinstance(msg, Subscribe):
        assert set(msg.since) <= set(msg.channels)
        for pos in msg.since.values():
            assert isinstance(pos, Position)
            assert isinstance(pos.epoch, str)
            assert 0 < len(pos.epoch) <= MAX_EPOCH
            assert type(pos.seq) is int
            assert pos.seq >= 0


def check_event(ev: object) -> None:
    """What a successful parse_event returns is well formed, and frames back to itself."""
    assert isinstance(ev, Event)
    assert keys.channel(ev.channel) == ev.channel
    assert isinstance(ev.epoch, str)
    assert ev.epoch
    assert type(ev.seq) is int
    assert ev.seq >= 1
    assert isinstance(ev.kind, str)
    assert type(ev.ts) is int
    assert protocol.parse_event(ev.frame()) == ev


def client(raw: bytes | str) -> None:
    msg = ours(lambda: protocol.parse_client(raw))
    if msg is not None:
        check_client(msg)


def envelope(raw: bytes | str) -> None:
    ev = ours(lambda: protocol.parse_event(raw))
    if ev is not None:
        check_event(ev)


# ---- protocol: any bytes, any text, any JSON -------------------------------------------------


@FUZZ
@given(st.binary(max_size=200) | st.text(st.characters() | SURROGATES, max_size=200))
@example(b"\xff")
@example("\ud800")
@example('"\\ud800"')
@example("1e400")
@example("[" * 1030 + "]" * 1030)
def test_parse_client_any_bytes_or_text(raw: bytes | str) -> None:
    client(raw)


@FUZZ
@given(st.binary(max_size=200) | st.text(st.characters() | SURROGATES, max_size=200))
def test_parse_event_any_bytes_or_text(raw: bytes | str) -> None:
    envelope(raw)


@FUZZ
@given(DEEP_RAW | WIRE_JSON_DEEP, st.booleans())
def test_parse_client_any_json(value: Any, as_bytes: bool) -> None:
    text = encode(value)
    client(text.encode() if as_bytes else text)


@FUZZ
@given(DEEP_RAW | WIRE_JSON_DEEP, st.booleans())
def test_parse_event_any_json(value: Any, as_bytes: bool) -> None:
    text = encode(value)
    envelope(text.encode() if as_bytes else text)


# ---- protocol: messages with the right shape and wrong parts ---------------------------------

POSITIONS_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "epoch": EPOCHS | st.text(max_size=70) | ODD,
        "seq": INTS | HUGE_JSON_INTS | ODD,
    },
)


@st.composite
def client_messages(draw: st.DrawFn) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": draw(st.sampled_from(["subscribe", "unsubscribe", "ping", "ack"]) | ODD)
    }
    if draw(st.booleans()):
        msg["id"] = draw(st.text(max_size=70) | ODD)
    names = draw(st.lists(NEAR_CHANNELS, max_size=6) | MANY_CHANNELS)
    if draw(st.booleans()):
        msg["channels"] = draw(st.just(names) | st.lists(NEAR_CHANNELS | ODD, max_size=6) | ODD)
    if draw(st.booleans()):
        since_keys = st.sampled_from(names) if names else NEAR_CHANNELS
        msg["since"] = draw(
            st.dictionaries(since_keys | NEAR_CHANNELS, POSITIONS_LIKE | ODD, max_size=5) | ODD
        )
    return msg


@FUZZ
@given(client_messages(), st.booleans())
@example({"type": deep_raw(1000, 0), "channels": ["venue"]}, False)
def test_parse_client_structured(msg: dict[str, Any], as_bytes: bool) -> None:
    text = encode(msg)
    client(text.encode() if as_bytes else text)


@st.composite
def event_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "channel": NEAR_CHANNELS | ODD,
        "epoch": EPOCHS | st.text(max_size=5) | ODD,
        "seq": INTS | HUGE_JSON_INTS | ODD,
        "kind": st.sampled_from([*Kind]).map(str) | st.text(max_size=5) | ODD,
        "data": ODD,
        "ts": INTS | HUGE_JSON_INTS | ODD,
    }
    msg: dict[str, Any] = {"type": draw(st.just("event") | WIRE_JSON)}
    for name, strategy in fields.items():
        if draw(st.integers(0, 4)):  # mostly present
            msg[name] = draw(strategy)
    return msg


@FUZZ
@given(event_envelopes(), st.booleans())
@example({"type": "event", "channel": deep_raw(1000, 0)}, False)
@example(
    {"type": "event", "channel": "venue", "epoch": "e", "seq": 1, "kind": "k", "ts": True}, False
)
def test_parse_event_structured(msg: dict[str, Any], as_bytes: bool) -> None:
    text = encode(msg)
    envelope(text.encode() if as_bytes else text)


# ---- protocol: valid input parses to what it says --------------------------------------------


@FUZZ
@given(
    st.lists(CHANNELS, min_size=1, max_size=MAX_CHANNELS_PER_CONNECTION),
    st.data(),
)
def test_parse_client_valid_subscribe(channels: list[str], data: st.DataObject) -> None:
    since = data.draw(
        st.dictionaries(
            st.sampled_from(channels),
            st.builds(Position, st.text(min_size=1, max_size=MAX_EPOCH), st.integers(0, 2**63)),
            max_size=5,
        )
    )
    raw = orjson.dumps(
        {
            "type": "subscribe",
            "channels": channels,
            "since": {ch: {"epoch": p.epoch, "seq": p.seq} for ch, p in since.items()},
        }
    )
    msg = protocol.parse_client(raw)
    assert msg == Subscribe(tuple(dict.fromkeys(channels)), since)
    check_client(msg)
    assert protocol.parse_client(
        orjson.dumps({"type": "unsubscribe", "channels": channels})
    ) == Unsubscribe(tuple(dict.fromkeys(channels)))
    assert protocol.parse_client(b'{"type": "ping"}') == Ping()


# What orjson writes and reads back unchanged: 64-bit ints, finite floats, text without surrogates.
ORJSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
ORJSON_VALUES = json_values(ORJSON_LEAVES, st.text(max_size=10))
VALID_EVENTS = st.builds(
    Event,
    channel=CHANNELS,
    epoch=st.text(min_size=1, max_size=20),
    seq=st.integers(1, 2**63 - 1),
    kind=st.text(max_size=20),
    data=ORJSON_VALUES,
    ts=st.integers(-(2**63), 2**63 - 1),
)


@FUZZ
@given(VALID_EVENTS)
def test_event_frame_round_trips(ev: Event) -> None:
    assert protocol.parse_event(ev.frame()) == ev
    check_event(ev)


@FUZZ
@given(CHANNELS, st.text(max_size=20), ORJSON_VALUES, st.integers(-(2**63), 2**63 - 1))
def test_envelope_parts_join_to_an_event(channel: str, kind: str, data: Any, ts: int) -> None:
    # What the publish script does with the parts: epoch and seq inserted where Redis assigns them.
    head, middle, tail = protocol.envelope_parts(channel, kind, data, ts)
    epoch, seq = "19a2b3c4d5e6f7a8", 42
    ev = protocol.parse_event(head + epoch + middle + str(seq) + tail)
    assert ev == Event(channel, epoch, seq, kind, data, ts)


# ---- models: the publish validators, given anything ------------------------------------------

STATUSES = st.sampled_from([*Status]) | st.sampled_from([s.value for s in Status])
ROOM_LIKE = ROOM_IDS | NEAR_CHANNELS | ANY
LANGS = st.sampled_from(["en", "fr", "ar", "pt-BR", "zh-Hant", "EN", "e", "abcd", "fr-", ""])
TEXT_LIKE = (
    st.text(max_size=40)
    | st.text(st.sampled_from(" \t\n\r\x00\x1b\x7fa"), max_size=10)
    | st.integers(MAX_TEXT - 2, MAX_TEXT + 2).map(lambda n: "x" * n)
    | ANY
)
TEXTS_LIKE = TEXT_LIKE | st.dictionaries(LANGS | ANY_TEXT, TEXT_LIKE, max_size=10)


def check_text(value: object) -> None:
    assert isinstance(value, str)
    assert value.strip()
    assert len(value) <= MAX_TEXT
    assert all(ord(c) >= 32 or c in "\n\t" for c in value)


def check_texts(value: object) -> None:
    if isinstance(value, str):
        check_text(value)
        return
    assert isinstance(value, dict)
    assert 0 < len(value) <= models.MAX_LANGUAGES
    for lang, one in value.items():
        assert isinstance(lang, str)
        assert models._LANG.fullmatch(lang)
        check_text(one)


@FUZZ
@given(
    status=STATUSES | ANY,
    delay=st.integers(-2, MAX_DELAY_MINUTES + 2) | ANY,
    session=st.none() | st.text(max_size=210) | ANY,
    moved_to=st.none() | ROOM_LIKE,
)
@example(status="live", delay=10**5000, session=None, moved_to=None)
@example(status=nested(1000), delay=0, session=None, moved_to=None)
@example(status="moved", delay=0, session=None, moved_to=nested(1000))
def test_status_data(status: object, delay: object, session: object, moved_to: object) -> None:
    data = ours(lambda: models.status_data(status, delay=delay, session=session, moved_to=moved_to))
    if data is None:
        return
    assert set(data) == {"status", "delay", "session", "moved_to"}
    assert type(data["status"]) is str
    assert data["status"] in {s.value for s in Status}
    assert type(data["delay"]) is int
    assert 0 <= data["delay"] <= MAX_DELAY_MINUTES
    assert data["session"] is None or (
        isinstance(data["session"], str) and 0 < len(data["session"]) <= models.MAX_SESSION_ID
    )
    if data["moved_to"] is not None:
        assert data["status"] == Status.MOVED
        assert keys.room_id(data["moved_to"]) == data["moved_to"]
    models.event(Kind.STATUS, data)  # always publishable


@FUZZ
@given(TEXT_LIKE)
def test_text(value: object) -> None:
    clean = ours(lambda: models.text(value))
    if clean is not None:
        check_text(clean)
        assert clean == value


@FUZZ
@given(TEXTS_LIKE, LANGS | st.text(max_size=8))
@example({"en": nested(1000)}, "en")
def test_texts(value: object, reader: str) -> None:
    clean = ours(lambda: models.texts(value))
    if clean is None:
        return
    check_texts(clean)
    shown = models.in_language(clean, reader)
    assert shown in ([clean] if isinstance(clean, str) else list(clean.values()))


@FUZZ
@given(
    kind=st.sampled_from([*Kind]) | st.from_regex(r"[a-z][a-z0-9_]{0,33}", fullmatch=True) | ANY,
    data=ANY | st.integers(60 * 1024 - 4, 60 * 1024 + 4).map(lambda n: "x" * n),
)
@example(kind=10**5000, data=None)
@example(kind=nested(1000), data=None)
@example(kind="status", data=nested(1000))
def test_event(kind: object, data: object) -> None:
    def accepted() -> bool:
        models.event(kind, data)
        return True

    if not ours(accepted):
        return
    assert isinstance(kind, str)
    assert models._KIND.fullmatch(kind)
    assert len(orjson.dumps(data)) <= models.MAX_PROGRAM_EVENT_BYTES


@FUZZ
@given(
    text_value=TEXTS_LIKE,
    rooms=st.lists(ROOM_LIKE, max_size=4) | MANY_ROOMS,
    priority=st.sampled_from([*Priority]) | st.sampled_from([p.value for p in Priority]) | ANY,
    ts=st.integers(),
    expires_at=st.none() | st.integers(),
    announcement_id=st.none() | st.text(max_size=70) | ANY,
)
@example(
    text_value="x",
    rooms=[nested(1000)],
    priority="info",
    ts=0,
    expires_at=None,
    announcement_id=None,
)
@example(text_value="x", rooms=[], priority=10**5000, ts=0, expires_at=None, announcement_id=None)
def test_announcement(
    *,
    text_value: object,
    rooms: list[Any],
    priority: object,
    ts: int,
    expires_at: int | None,
    announcement_id: object,
) -> None:
    data = ours(
        lambda: models.announcement(
            text_value,
            rooms=rooms,
            priority=priority,
            ts=ts,
            expires_at=expires_at,
            announcement_id=announcement_id,  # type: ignore[arg-type]  # JSON from a client
        )
    )
    if data is None:
        return
    assert set(data) == {"id", "text", "priority", "rooms", "ts", "expires_at"}
    aid = data["id"]
    assert isinstance(aid, str)
    assert 0 < len(aid) <= models.MAX_ANNOUNCEMENT_ID
    assert aid.isascii()
    assert aid.isprintable()
    check_texts(data["text"])
    assert type(data["priority"]) is str
    assert data["priority"] in {p.value for p in Priority}
    assert data["rooms"] == sorted(set(data["rooms"]))
    assert len(data["rooms"]) <= models.MAX_ROOMS_PER_ANNOUNCEMENT
    assert all(keys.room_id(r) == r for r in data["rooms"])
    if data["expires_at"] is not None:
        assert data["expires_at"] > data["ts"]
        assert data["priority"] != Priority.EMERGENCY
    ours(lambda: models.event(Kind.ANNOUNCE, data))  # over the size limit at most
    for ch in models.announcement_channels(data["rooms"]):
        assert keys.channel(ch) == ch


@FUZZ
@given(st.lists(ROOM_LIKE, max_size=4))
def test_announcement_channels(rooms: list[Any]) -> None:
    channels = ours(lambda: models.announcement_channels(rooms))
    if channels is not None:
        assert all(keys.channel(ch) == ch for ch in channels)
        assert channels == ([keys.ROOM_PREFIX + r for r in rooms] if rooms else [keys.VENUE])


@FUZZ
@given(ROOM_LIKE)
@example(10**5000)
@example(nested(1000))
def test_channel_and_room_id(value: object) -> None:
    ch = ours(lambda: keys.channel(value))
    assert ch is None or ch == value
    room = ours(lambda: keys.room_id(value))  # type: ignore[arg-type]  # any caller's value
    assert room is None or room == value
    room_ch = ours(lambda: keys.room_channel(value))  # type: ignore[arg-type]
    assert (room is None) == (room_ch is None)
