"""Channel names and Redis keys."""

from __future__ import annotations

import fnmatch

import pytest

from feed import keys
from feed.errors import InvalidMessage


@pytest.mark.parametrize("room", ["a", "0", "atlas", "hall-b", "room_12", "a" * keys.MAX_ROOM_ID])
def test_valid_room_ids(room: str) -> None:
    assert keys.room_id(room) == room


@pytest.mark.parametrize(
    "room",
    [
        "",
        "Atlas",
        "ATLAS",
        "a" * (keys.MAX_ROOM_ID + 1),
        "-atlas",
        "_atlas",
        "hall b",
        "hall.b",
        "salle-é",
        "atlas\n",
        "room:atlas",
    ],
)
def test_invalid_room_ids(room: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        keys.room_id(room)
    assert repr(room) in info.value.message
    assert f"1-{keys.MAX_ROOM_ID} lowercase letters" in info.value.message


def test_room_id_rejects_non_strings() -> None:
    with pytest.raises(InvalidMessage):
        keys.room_id(12)  # type: ignore[arg-type]


def test_room_channel() -> None:
    assert keys.room_channel("atlas") == "room:atlas"
    with pytest.raises(InvalidMessage):
        keys.room_channel("Atlas")


@pytest.mark.parametrize("name", ["venue", "room:atlas", "room:hall-b", "room:" + "a" * 64])
def test_valid_channels(name: str) -> None:
    assert keys.channel(name) == name


@pytest.mark.parametrize("name", ["room:", "room:Atlas", "room:" + "a" * 65, "room:a:b"])
def test_room_channels_with_a_bad_room_id(name: str) -> None:
    with pytest.raises(InvalidMessage, match="invalid room id"):
        keys.channel(name)


@pytest.mark.parametrize(
    "name", ["Venue", "VENUE", "rooms:atlas", "ROOM:atlas", "", "atlas", None, 3]
)
def test_unknown_channels(name: object) -> None:
    with pytest.raises(InvalidMessage) as info:
        keys.channel(name)
    assert info.value.message == (f"unknown channel {name!r}: expected 'venue' or 'room:<room-id>'")


def test_room_of() -> None:
    assert keys.room_of("room:atlas") == "atlas"
    assert keys.room_of(keys.VENUE) is None


@pytest.mark.parametrize("name", ["venue", "room:atlas"])
def test_meta_and_log_keys_share_a_hash_tag(name: str) -> None:
    assert keys.meta_key(name) == f"feed:{{{name}}}:meta"
    assert keys.log_key(name) == f"feed:{{{name}}}:log"
    assert keys.meta_key(name) != keys.log_key(name)


@pytest.mark.parametrize("name", ["venue", "room:atlas", "room:hall-b"])
def test_channel_of_meta_round_trips(name: str) -> None:
    assert keys.channel_of_meta(keys.meta_key(name)) == name


@pytest.mark.parametrize(
    "key", ["feed:{venue}:log", "feed:bus", "other:{venue}:meta", "feed:venue:meta", "feed:{venue}"]
)
def test_channel_of_meta_ignores_other_keys(key: str) -> None:
    assert keys.channel_of_meta(key) is None


def test_meta_pattern_matches_meta_keys() -> None:

    assert fnmatch.fnmatchcase(keys.meta_key("room:atlas"), keys.META_PATTERN)
    assert not fnmatch.fnmatchcase(keys.log_key("room:atlas"), keys.META_PATTERN)
