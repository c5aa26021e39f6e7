"""Channel names and every Redis key the project uses, in one place.

Channels:
- `room:<room-id>`: a room's status and the announcements aimed at that room;
- `venue`: the announcements for everyone.

Redis, for the venue:
- `feed:program`: hash with the imported program (`json`), its `etag`, and `rooms` (the JSON
  map of room names to ids, kept across re-imports so ids stay stable);
- `feed:program:import`: held while an import runs, so imports do not interleave;
- `feed:program:follow`: what `feed schedule follow` says of itself (JSON, expires when it stops);
- `feed:tokens`: hash of token id -> token record (JSON, with the secret's hash only);
- `feed:announcements`: hash of announcement id -> where it was posted (JSON);
- `feed:expiries`: sorted set of "<channel> <announcement id>" by expiry time (Unix ms);
- `feed:epoch-seed`: made once; the placeholder epochs of unpublished channels derive from it;
- `feed:rate:<token id>:<window>` and `feed:idem:<token id>:<key hash>`: short-lived counters
  and stored answers for rate limits and idempotent retries.

Redis, per channel `<ch>`:
- `feed:{<ch>}:meta`: hash with `epoch`, `seq` and `state` (JSON), the channel's latest value;
- `feed:{<ch>}:log`: capped stream of event envelopes, entry id `<seq>-0`;
and one pub/sub channel, `feed:bus`, that carries every envelope to every web process.
The braces are a Redis Cluster hash tag: a channel's two keys always live on the same shard, which
the atomic publish script needs.
"""

from __future__ import annotations

import hashlib
import re
import reprlib

from feed.errors import InvalidMessage

VENUE = "venue"
ROOM_PREFIX = "room:"
BUS = "feed:bus"
PROBE_PREFIX = "feed:probe:"  # + a process's id: probes of its subscription (feed.bus.Bus.listen)

MAX_ROOM_ID = 64
_ROOM_ID = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,63})")


def probe(process_id: str) -> str:
    return PROBE_PREFIX + process_id


def room_id(value: str) -> str:
    """Validate a room id: lowercase letters, digits, `-` and `_`, 1-64 characters."""
    if not isinstance(value, str) or not _ROOM_ID.fullmatch(value):
        raise InvalidMessage(
            f"invalid room id {brief_repr(value)}: use 1-{MAX_ROOM_ID} lowercase letters, digits,"
            " '-' or '_', starting with a letter or digit",
            field="room",
        )
    return value


MAX_SCREEN_NAME = 64
_SCREEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def screen_name(value: object) -> str:
    """Validate a screen's name (a screen token's): 1-64 letters, digits, `.`, `_`, `-`."""
    if not isinstance(value, str) or not _SCREEN_NAME.fullmatch(value):
        raise InvalidMessage(
            f"invalid screen name {brief_repr(value)}: 1-{MAX_SCREEN_NAME} letters, digits, '.',"
            " '_' or '-', starting with a letter or a digit",
            field="screen",
        )
    return value


def room_channel(room: str) -> str:
    return ROOM_PREFIX + room_id(room)


def channel(value: object) -> str:
    """Validate a channel name (`venue` or `room:<room-id>`) and return it."""
    if value == VENUE:
        return VENUE
    if isinstance(value, str) and value.startswith(ROOM_PREFIX):
        room_id(value[len(ROOM_PREFIX) :])
        return value
    raise InvalidMessage(
        f"unknown channel {brief_repr(value)}: expected 'venue' or 'room:<room-id>'"
    )


class _BriefRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 100

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # more digits than str() may write (sys.get_int_max_str_digits)
            return f"<an integer of {x.bit_length()} bits>"


_BRIEF = _BriefRepr()


def brief_repr(value: object) -> str:
    """`repr(value)` for an error message about untrusted input: long or nested values are cut
    short, and it never raises (plain `repr` does on nesting about 1000 deep, which JSON allows,
    and on integers of more than 4300 digits)."""
    return _BRIEF.repr(value)


def room_of(ch: str) -> str | None:
    """The room id of a room channel, None for `venue`."""
    return ch[len(ROOM_PREFIX) :] if ch.startswith(ROOM_PREFIX) else None


def meta_key(ch: str) -> str:
    return f"feed:{{{ch}}}:meta"


def log_key(ch: str) -> str:
    return f"feed:{{{ch}}}:log"


META_PATTERN = "feed:{*}:meta"
PROGRAM = "feed:program"
IMPORT_LOCK = "feed:program:import"
FOLLOW = "feed:program:follow"  # publisher.follow's state, read by /metrics and the console
TOKENS = "feed:tokens"
ANNOUNCEMENTS = "feed:announcements"
CALENDAR = "feed:calendar"  # hash: session id -> its calendar entry (feed.calendar)
EXPIRIES = "feed:expiries"
# A random value made once per Redis data set: the placeholder epoch of a channel nobody has
# published on derives from it (feed.bus.placeholder), so a Redis that lost everything (and
# this with it) never hands out an epoch of the past again.
EPOCH_SEED = "feed:epoch-seed"
# While a demo plays: its accelerated clock (feed.clock.Clock.to_json), so that `feed publish`
# and other publishers stamp events in the demo's time, not today's.
CLOCK = "feed:clock"


def rate_key(token_id: str, window: int) -> str:
    return f"feed:rate:{token_id}:{window}"


def idempotency_key(token_id: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"feed:idem:{token_id}:{digest}"


def channel_of_meta(key: str) -> str | None:
    """The channel a meta key belongs to, None for a key that is not one of ours."""
    if key.startswith("feed:{") and key.endswith("}:meta"):
        return key[len("feed:{") : -len("}:meta")]
    return None


# Who is watching. Each server writes its own counts, which expire if it dies; screens are kept
# by name, with when they were last seen; receipts say which screens showed an announcement.
PRESENCE_PREFIX = "feed:presence:"  # + a server's id: hash "<channel>|<kind>" -> connections
SCREENS = "feed:screens"  # hash: screen name -> JSON record
RECEIPTS_PREFIX = "feed:receipts:"  # + an announcement id: hash screen name -> Unix ms


WRITABLE_PREFIX = "feed:writable:"  # + a server's id: its check that Redis takes writes


def writable_key(server_id: str) -> str:
    return WRITABLE_PREFIX + server_id


def presence_key(server_id: str) -> str:
    return PRESENCE_PREFIX + server_id


def receipts_key(announcement_id: str) -> str:
    return RECEIPTS_PREFIX + announcement_id
