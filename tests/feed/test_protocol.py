"""The wire protocol: client frames, event envelopes and what the server sends."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from feed import protocol
from feed.errors import InvalidMessage, LimitExceeded
from feed.protocol import (
    MAX_CHANNELS_PER_CONNECTION,
    Event,
    Ping,
    Position,
    Subscribe,
    Unsubscribe,
)


def dumps(msg: Any) -> bytes:
    return orjson.dumps(msg)


# ---- parse_client --------------------------------------------------------------------------------


def test_subscribe() -> None:
    msg = protocol.parse_client(dumps({"type": "subscribe", "channels": ["venue", "room:atlas"]}))
    assert msg == Subscribe(("venue", "room:atlas"), {})


def test_subscribe_accepts_str_and_deduplicates_in_order() -> None:
    raw = '{"type":"subscribe","channels":["room:b","venue","room:b","room:a"]}'
    msg = protocol.parse_client(raw)
    assert isinstance(msg, Subscribe)
    assert msg.channels == ("room:b", "venue", "room:a")


def test_subscribe_with_since() -> None:
    msg = protocol.parse_client(
        dumps(
            {
                "type": "subscribe",
                "channels": ["venue", "room:atlas"],
                "since": {
                    "venue": {"epoch": "e1", "seq": 0},
                    "room:atlas": {"epoch": "e2", "seq": 7},
                },
            }
        )
    )
    assert msg == Subscribe(
        ("venue", "room:atlas"),
        {"venue": Position("e1", 0), "room:atlas": Position("e2", 7)},
    )


def test_since_for_channels_not_subscribed_is_ignored() -> None:
    msg = protocol.parse_client(
        dumps(
            {
                "type": "subscribe",
                "channels": ["venue"],
                "since": {"room:other": {"epoch": "e", "seq": 1}},
            }
        )
    )
    assert msg == Subscribe(("venue",), {})


def test_since_null_means_none() -> None:
    msg = protocol.parse_client(dumps({"type": "subscribe", "channels": ["venue"], "since": None}))
    assert msg == Subscribe(("venue",), {})


def test_unsubscribe() -> None:
    msg = protocol.parse_client(dumps({"type": "unsubscribe", "channels": ["room:atlas"]}))
    assert msg == Unsubscribe(("room:atlas",))


def test_ping() -> None:
    assert protocol.parse_client(b'{"type":"ping"}') == Ping()


@pytest.mark.parametrize("raw", [b"", b"{", b"subscribe", b"\xff\xfe", "{'type': 'ping'}"])
def test_not_json(raw: bytes | str) -> None:
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        protocol.parse_client(raw)


@pytest.mark.parametrize("raw", [b"[]", b'"ping"', b"1", b"null", b'[{"type":"ping"}]'])
def test_not_an_object(raw: bytes) -> None:
    with pytest.raises(InvalidMessage, match="JSON object with a 'type'"):
        protocol.parse_client(raw)


@pytest.mark.parametrize("kind", ["publish", "PING", None, 1])
def test_unknown_type(kind: object) -> None:
    with pytest.raises(InvalidMessage) as info:
        protocol.parse_client(dumps({"type": kind, "channels": ["venue"]}))
    assert f"unknown message type {kind!r}" in info.value.message
    assert "subscribe, unsubscribe, ping, ack or identify" in info.value.message


def test_missing_type() -> None:
    with pytest.raises(InvalidMessage, match="unknown message type None"):
        protocol.parse_client(b"{}")


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("channels", [[], None, "venue", {"venue": 1}])
def test_channels_must_be_a_non_empty_list(kind: str, channels: object) -> None:
    msg: dict[str, Any] = {"type": kind}
    if channels is not None:
        msg["channels"] = channels
    with pytest.raises(InvalidMessage, match="non-empty list of channel names"):
        protocol.parse_client(dumps(msg))


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
def test_invalid_channel_name(kind: str) -> None:
    with pytest.raises(InvalidMessage, match="unknown channel 'lobby'"):
        protocol.parse_client(dumps({"type": kind, "channels": ["venue", "lobby"]}))


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
def test_too_many_channels(kind: str) -> None:
    many = [f"room:r{i}" for i in range(MAX_CHANNELS_PER_CONNECTION + 1)]
    with pytest.raises(LimitExceeded, match=f"at most {MAX_CHANNELS_PER_CONNECTION} channels"):
        protocol.parse_client(dumps({"type": kind, "channels": many}))


def test_channel_limit_itself_is_allowed() -> None:
    many = [f"room:r{i}" for i in range(MAX_CHANNELS_PER_CONNECTION)]
    msg = protocol.parse_client(dumps({"type": "subscribe", "channels": many}))
    assert isinstance(msg, Subscribe)
    assert len(msg.channels) == MAX_CHANNELS_PER_CONNECTION


def test_limit_exceeded_is_not_an_invalid_message() -> None:
    # The server maps them to different codes; both remain ValueErrors.
    assert not issubclass(LimitExceeded, InvalidMessage)
    assert issubclass(LimitExceeded, ValueError)


@pytest.mark.parametrize(
    ("since", "match"),
    [
        (["venue"], "'since' must map channel names"),
        ("e1:3", "'since' must map channel names"),
        ({"venue": 3}, r"since\['venue'\] must be an object"),
        ({"venue": {"seq": 3}}, r"since\['venue'\]\.epoch must be a non-empty string"),
        ({"venue": {"epoch": "", "seq": 3}}, r"\.epoch must be a non-empty string"),
        ({"venue": {"epoch": 7, "seq": 3}}, r"\.epoch must be a non-empty string"),
        ({"venue": {"epoch": "e" * 65, "seq": 3}}, r"\.epoch must be a non-empty string"),
        ({"venue": {"epoch": "e1"}}, r"\.seq must be a non-negative integer"),
        ({"venue": {"epoch": "e1", "seq": -1}}, r"\.seq must be a non-negative integer"),
        ({"venue": {"epoch": "e1", "seq": 1.5}}, r"\.seq must be a non-negative integer"),
        ({"venue": {"epoch": "e1", "seq": "3"}}, r"\.seq must be a non-negative integer"),
        ({"venue": {"epoch": "e1", "seq": True}}, r"\.seq must be a non-negative integer"),
    ],
)
def test_bad_since(since: object, match: str) -> None:
    with pytest.raises(InvalidMessage, match=match):
        protocol.parse_client(dumps({"type": "subscribe", "channels": ["venue"], "since": since}))


# ---- parse_event and envelope_parts --------------------------------------------------------------


def envelope(**fields: Any) -> bytes:
    msg = {
        "type": "event",
        "channel": "room:atlas",
        "epoch": "e1",
        "seq": 3,
        "kind": "status",
        "data": {"status": "live"},
        "ts": 1000,
    }
    msg.update(fields)
    return dumps({k: v for k, v in msg.items() if v is not ...})


def test_parse_event() -> None:
    assert protocol.parse_event(envelope()) == Event(
        "room:atlas", "e1", 3, "status", {"status": "live"}, 1000
    )


def test_parse_event_without_data() -> None:
    assert protocol.parse_event(envelope(data=...)).data is None


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"nope", "envelope is not valid JSON"),
        (b"[1]", "not an event envelope"),
        (envelope(type="snapshot"), "not an event envelope"),
        (envelope(type=...), "not an event envelope"),
        (envelope(channel="lobby"), "unknown channel"),
        (envelope(channel="room:Bad"), "invalid room id"),
        (envelope(epoch=""), "without an epoch"),
        (envelope(epoch=5), "without an epoch"),
        (envelope(seq=0), "without a positive seq"),
        (envelope(seq=-2), "without a positive seq"),
        (envelope(seq="3"), "without a positive seq"),
        (envelope(seq=True), "without a positive seq"),
        (envelope(kind=None), "without a kind or ts"),
        (envelope(ts=...), "without a kind or ts"),
        (envelope(ts="now"), "without a kind or ts"),
    ],
)
def test_parse_event_rejects(raw: bytes, match: str) -> None:
    with pytest.raises(InvalidMessage, match=match):
        protocol.parse_event(raw)


def join(parts: tuple[str, str, str], epoch: str, seq: int) -> str:
    """What the publish script does with the parts."""
    head, middle, tail = parts
    return head + epoch + middle + str(seq) + tail


@pytest.mark.parametrize(
    ("channel", "kind", "data"),
    [
        ("room:atlas", "status", {"status": "delayed", "delay": 5, "session": None}),
        ("venue", "announce", {"text": "الكلمة الرئيسية في القاعة الكبرى", "rooms": []}),
        ("venue", "announce", {"text": 'He said "hi" \\ bye\n\t}{,"seq":9', "emoji": "🎤"}),
        ("room:hall-b", "retract", {"id": "abc"}),
        ("venue", "future-kind", None),
        ("venue", "list", [1, "two", {"three": 3.5}, True]),
        ("venue", "s", 'a plain string with "quotes" and \''),
    ],
)
@pytest.mark.parametrize(("epoch", "seq"), [("66a1b2c3deadbeef", 1), ("e", 123_456_789_012)])
def test_envelope_parts_round_trip(
    channel: str, kind: str, data: Any, epoch: str, seq: int
) -> None:
    ts = 1_700_000_000_123
    raw = join(protocol.envelope_parts(channel, kind, data, ts), epoch, seq)
    event = protocol.parse_event(raw)
    assert event == Event(channel, epoch, seq, kind, data, ts)
    assert protocol.parse_event(raw.encode()) == event
    # The envelope in Redis is byte for byte the event frame clients receive.
    assert raw.encode() == event.frame()


def test_envelope_parts_epoch_and_seq_slots() -> None:
    head, middle, tail = protocol.envelope_parts("venue", "announce", {"x": 1}, 5)
    assert head.endswith('"epoch":"')
    assert middle == '","seq":'
    assert tail.startswith(",")
    assert tail.endswith("}")


# ---- what the server sends -----------------------------------------------------------------------


def test_event_frame() -> None:
    frame = Event("venue", "e1", 2, "announce", {"text": "é"}, 10).frame()
    assert isinstance(frame, bytes)
    assert orjson.loads(frame) == {
        "type": "event",
        "channel": "venue",
        "epoch": "e1",
        "seq": 2,
        "kind": "announce",
        "data": {"text": "é"},
        "ts": 10,
    }


def test_server_messages() -> None:
    state: dict[str, Any] = {"announcements": []}
    assert orjson.loads(protocol.snapshot("venue", "e1", 4, state)) == {
        "type": "snapshot",
        "channel": "venue",
        "epoch": "e1",
        "seq": 4,
        "state": state,
    }
    assert orjson.loads(protocol.subscribed("venue", "e1", 4, True)) == {
        "type": "subscribed",
        "channel": "venue",
        "epoch": "e1",
        "seq": 4,
        "resumed": True,
    }
    assert orjson.loads(protocol.unsubscribed(("venue", "room:a"))) == {
        "type": "unsubscribed",
        "channels": ["venue", "room:a"],
    }
    assert orjson.loads(protocol.pong(99)) == {"type": "pong", "server_time": 99}
    assert orjson.loads(protocol.health(False, 5)) == {
        "type": "health",
        "live": False,
        "server_time": 5,
    }
    assert orjson.loads(protocol.error("limit", "too many", limit=3)) == {
        "type": "error",
        "code": "limit",
        "message": "too many",
        "limit": 3,
    }
    hello = orjson.loads(protocol.hello(7, True))
    assert hello == {
        "type": "hello",
        "server_time": 7,
        "clock_rate": 1.0,
        "live": True,
        "limits": {
            "frame_bytes": protocol.MAX_FRAME_BYTES,
            "channels": MAX_CHANNELS_PER_CONNECTION,
        },
        "venue": None,
    }
    venue = {"zone": "Africa/Casablanca", "tzdata": "2026f", "offsets": [[0, 60]]}
    assert orjson.loads(protocol.hello(7, True, venue=venue))["venue"] == venue


def test_ack_names_an_announcement() -> None:
    assert protocol.parse_client('{"type": "ack", "id": "a1b2"}') == protocol.Ack("a1b2")
    token = "feed_0123456789ab_" + "s" * 43
    identify = protocol.parse_client(f'{{"type": "identify", "token": "{token}"}}')
    assert identify == protocol.Identify(token) and token not in repr(identify)
    for bad in (
        '{"type": "identify"}',
        '{"type": "identify", "token": ""}',
        '{"type": "identify", "token": 7}',
        dumps({"type": "identify", "token": "x" * 201}),
    ):
        with pytest.raises(InvalidMessage, match="screen token"):
            protocol.parse_client(bad)
    for bad in ('{"type": "ack"}', '{"type": "ack", "id": ""}', '{"type": "ack", "id": 7}'):
        with pytest.raises(InvalidMessage, match="announcement id"):
            protocol.parse_client(bad)
