"""The wire protocol, without I/O: parse what clients and Redis send, encode what the server sends.

Everything the server writes to a websocket is built here, once per message, as bytes ready to go
out as a text frame. See docs/protocol.md for the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from feed import keys, models
from feed.errors import InvalidMessage, LimitExceeded

MAX_FRAME_BYTES = 64 * 1024
MAX_CHANNELS_PER_CONNECTION = 256
MAX_EPOCH = 64


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client is in a channel: the last (epoch, seq) it has applied."""

    epoch: str
    seq: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    channels: tuple[str, ...]
    since: dict[str, Position] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Ack:
    """A named screen says an announcement is on its display (delivery receipts)."""

    id: str


@dataclass(frozen=True, slots=True)
class Identify:
    """A screen names itself with its screen token (which its page carries in its address's
    fragment, never in a URL the server or a referrer sees)."""

    token: str = field(repr=False)


MAX_TOKEN = 200
ClientMessage = Subscribe | Unsubscribe | Ping | Ack | Identify


@dataclass(frozen=True, slots=True)
class Event:
    """One change on one channel, as it travels through Redis and to clients."""

    channel: str
    epoch: str
    seq: int
    kind: str
    data: Any
    ts: int

    def frame(self) -> bytes:
        return orjson.dumps(
            {
                "type": "event",
                "channel": self.channel,
                "epoch": self.epoch,
                "seq": self.seq,
                "kind": self.kind,
                "data": self.data,
                "ts": self.ts,
            }
        )


def _loads(raw: bytes | str, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"{what} is not valid JSON: {exc}") from None


def _channels(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidMessage("'channels' must be a non-empty list of channel names")
    if len(value) > MAX_CHANNELS_PER_CONNECTION:
        raise LimitExceeded(f"at most {MAX_CHANNELS_PER_CONNECTION} channels per connection")
    return tuple(dict.fromkeys(keys.channel(c) for c in value))


def position(value: object, where: str) -> Position:
    if not isinstance(value, dict):
        raise InvalidMessage(f"{where} must be an object with 'epoch' and 'seq'")
    epoch, seq = value.get("epoch"), value.get("seq")
    if not isinstance(epoch, str) or not epoch or len(epoch) > MAX_EPOCH:
        raise InvalidMessage(f"{where}.epoch must be a non-empty string")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InvalidMessage(f"{where}.seq must be a non-negative integer")
    return Position(epoch, seq)


def parse_client(raw: bytes | str) -> ClientMessage:
    """Parse one frame from a client, or raise InvalidMessage / LimitExceeded saying why."""
    msg = _loads(raw, "the message")
    if not isinstance(msg, dict):
        raise InvalidMessage("a message must be a JSON object with a 'type'")
    kind = msg.get("type")
    if kind == "subscribe":
        channels = _channels(msg.get("channels"))
        since_raw = msg.get("since") or {}
        if not isinstance(since_raw, dict):
            raise InvalidMessage("'since' must map channel names to {epoch, seq}")
        since = {
            ch: position(since_raw[ch], f"since[{ch!r}]") for ch in channels if ch in since_raw
        }
        return Subscribe(channels, since)
    if kind == "unsubscribe":
        return Unsubscribe(_channels(msg.get("channels")))
    if kind == "ping":
        return Ping()
    if kind == "ack":
        return Ack(models.announcement_id_of(msg.get("id")))
    if kind == "identify":
        token = msg.get("token")
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN:
            raise InvalidMessage("'token' must be a screen token (feed token create --role screen)")
        return Identify(token)
    raise InvalidMessage(
        f"unknown message type {keys.brief_repr(kind)}: expected subscribe, unsubscribe, ping,"
        " ack or identify"
    )


def parse_event(raw: bytes | str) -> Event:
    """Parse an event envelope read from Redis (pub/sub or history); never trust it blindly."""
    msg = _loads(raw, "the envelope")
    if not isinstance(msg, dict) or msg.get("type") != "event":
        raise InvalidMessage("not an event envelope")
    ch = keys.channel(msg.get("channel"))
    epoch, seq = msg.get("epoch"), msg.get("seq")
    kind, ts = msg.get("kind"), msg.get("ts")
    if not isinstance(epoch, str) or not epoch:
        raise InvalidMessage("envelope without an epoch")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise InvalidMessage("envelope without a positive seq")
    if not isinstance(kind, str) or isinstance(ts, bool) or not isinstance(ts, int):
        raise InvalidMessage("envelope without a kind or ts")
    return Event(ch, epoch, seq, kind, msg.get("data"), ts)


def envelope_parts(channel: str, kind: str, data: Any, ts: int) -> tuple[str, str, str]:
    """An event envelope cut where Redis inserts the epoch and the seq it assigns.

    The publish script joins `head + epoch + middle + seq + tail`; the result parses as an Event.
    """
    rest = orjson.dumps({"kind": kind, "data": data, "ts": ts}).decode()
    head = '{"type":"event","channel":' + orjson.dumps(channel).decode() + ',"epoch":"'
    return head, '","seq":', "," + rest[1:]


def snapshot(channel: str, epoch: str, seq: int, state: Any) -> bytes:
    return orjson.dumps(
        {"type": "snapshot", "channel": channel, "epoch": epoch, "seq": seq, "state": state}
    )


def subscribed(channel: str, epoch: str, seq: int, resumed: bool) -> bytes:
    """Sent once a channel is live for a connection, after its snapshot or its missed events."""
    return orjson.dumps(
        {"type": "subscribed", "channel": channel, "epoch": epoch, "seq": seq, "resumed": resumed}
    )


def unsubscribed(channels: tuple[str, ...]) -> bytes:
    return orjson.dumps({"type": "unsubscribed", "channels": list(channels)})


def hello(
    server_time: int, live: bool, clock_rate: float = 1.0, venue: dict[str, Any] | None = None
) -> bytes:
    """The first message on a connection. `clock_rate` is 1 except in the demo, whose clock runs
    faster: clients extrapolate the server's time as server_time + elapsed * clock_rate. `venue`
    is venue time as the server knows it (see feed.zones.venue): pages place every time with it."""
    return orjson.dumps(
        {
            "type": "hello",
            "server_time": server_time,
            "clock_rate": clock_rate,
            "live": live,
            "limits": {
                "frame_bytes": MAX_FRAME_BYTES,
                "channels": MAX_CHANNELS_PER_CONNECTION,
            },
            "venue": venue,
        }
    )


def identified(screen: str, rooms: list[str]) -> bytes:
    """The answer to a screen's `identify`: the name it is known by, and where it stands."""
    return orjson.dumps({"type": "identified", "screen": screen, "rooms": rooms})


def health(live: bool, server_time: int) -> bytes:
    """Tells clients whether the server is connected to Redis (updates flowing) or not."""
    return orjson.dumps({"type": "health", "live": live, "server_time": server_time})


def pong(server_time: int) -> bytes:
    return orjson.dumps({"type": "pong", "server_time": server_time})


def error(code: str, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"type": "error", "code": code, "message": message, **extra})
