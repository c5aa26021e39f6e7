"""The domain validators: room statuses and announcements."""

from __future__ import annotations

import pytest

from feed import keys, models
from feed.errors import InvalidMessage
from feed.models import MAX_DELAY_MINUTES, MAX_TEXT, Priority, Status

TS = 1_700_000_000_000


# ---- status_data ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(Status))
def test_every_status_is_accepted_and_normalised(status: Status) -> None:
    data = models.status_data(status.value)
    assert data == {"status": status.value, "delay": 0, "session": None, "moved_to": None}
    assert type(data["status"]) is str  # a plain string, ready for JSON


def test_status_keeps_delay_and_session() -> None:
    data = models.status_data("delayed", delay=15, session="keynote-1")
    assert data == {"status": "delayed", "delay": 15, "session": "keynote-1", "moved_to": None}


def test_unknown_status_names_every_valid_one() -> None:
    with pytest.raises(InvalidMessage) as info:
        models.status_data("postponed")
    message = info.value.message
    assert "'postponed'" in message
    for status in Status:
        assert status.value in message


@pytest.mark.parametrize("status", ["LIVE", "", None, 3, ["live"]])
def test_status_must_be_an_exact_known_value(status: object) -> None:
    with pytest.raises(InvalidMessage, match="unknown status"):
        models.status_data(status)


@pytest.mark.parametrize("delay", [0, 1, MAX_DELAY_MINUTES])
def test_delay_bounds_accepted(delay: int) -> None:
    assert models.status_data("delayed", delay=delay)["delay"] == delay


@pytest.mark.parametrize("delay", [-1, MAX_DELAY_MINUTES + 1])
def test_delay_out_of_bounds_rejected(delay: int) -> None:
    with pytest.raises(InvalidMessage, match=f"between 0 and {MAX_DELAY_MINUTES}"):
        models.status_data("delayed", delay=delay)


@pytest.mark.parametrize("delay", [True, False, 5.5, "5", None, float("inf"), 2**53])
def test_delay_must_be_an_int_not_a_bool(delay: object) -> None:
    with pytest.raises(InvalidMessage, match="whole number of minutes"):
        models.status_data("delayed", delay=delay)


def test_a_whole_number_is_one_whatever_json_wrote() -> None:
    # A browser reads 5.0 as 5: the state says 5 on both sides.
    data = models.status_data("delayed", delay=5.0)
    assert data["delay"] == 5 and type(data["delay"]) is int


@pytest.mark.parametrize("session", ["", "   ", 7, "x" * (models.MAX_SESSION_ID + 1)])
def test_invalid_session_rejected(session: object) -> None:
    with pytest.raises(InvalidMessage, match="session"):
        models.status_data("live", session=session)


def test_moved_to_with_moved() -> None:
    data = models.status_data("moved", moved_to="hall-b")
    assert data["status"] == "moved"
    assert data["moved_to"] == "hall-b"


def test_moved_without_a_target_is_allowed() -> None:
    assert models.status_data("moved")["moved_to"] is None


@pytest.mark.parametrize("status", [s for s in Status if s != Status.MOVED])
def test_moved_to_only_with_moved(status: Status) -> None:
    with pytest.raises(InvalidMessage, match="only meaningful with the status 'moved'"):
        models.status_data(status.value, moved_to="hall-b")


@pytest.mark.parametrize("target", ["Hall B", "", "-x", 5])
def test_moved_to_must_be_a_room_id(target: object) -> None:
    with pytest.raises(InvalidMessage):
        models.status_data("moved", moved_to=target)


# ---- text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", "\n\t", None, 42])
def test_text_must_be_non_empty(value: object) -> None:
    with pytest.raises(InvalidMessage, match="must be non-empty"):
        models.text(value)


def test_text_length_limit() -> None:
    assert models.text("x" * MAX_TEXT) == "x" * MAX_TEXT
    with pytest.raises(InvalidMessage, match=f"{MAX_TEXT + 1} characters; the limit is {MAX_TEXT}"):
        models.text("x" * (MAX_TEXT + 1))


@pytest.mark.parametrize("value", ["bell\a", "nul\x00", "cr\rlf", "esc\x1b[31m"])
def test_text_control_characters_rejected(value: str) -> None:
    with pytest.raises(InvalidMessage, match="control characters"):
        models.text(value)


def test_text_allows_newlines_tabs_and_unicode() -> None:
    value = "Line one\n\tLine two — القاعة الرئيسية 🎤"
    assert models.text(value) == value


def test_text_error_names_the_field() -> None:
    with pytest.raises(InvalidMessage, match="title must be non-empty"):
        models.text("", "title")


# ---- announcement --------------------------------------------------------------------------------


def test_announcement_defaults() -> None:
    data = models.announcement("Lunch is served", ts=TS)
    assert data["text"] == "Lunch is served"
    assert data["priority"] == "info"
    assert data["rooms"] == []
    assert data["ts"] == TS
    assert data["expires_at"] is None
    assert isinstance(data["id"], str)
    assert 1 <= len(data["id"]) <= models.MAX_ANNOUNCEMENT_ID


def test_announcement_ids_are_fresh() -> None:
    first = models.announcement("a", ts=TS)["id"]
    second = models.announcement("a", ts=TS)["id"]
    assert first != second


def test_announcement_keeps_a_given_id() -> None:
    assert models.announcement("a", ts=TS, announcement_id="fixed-1")["id"] == "fixed-1"


@pytest.mark.parametrize("aid", ["x" * (models.MAX_ANNOUNCEMENT_ID + 1), "é", "a\nb"])
def test_announcement_id_rules(aid: str) -> None:
    with pytest.raises(InvalidMessage, match="announcement id"):
        models.announcement("a", ts=TS, announcement_id=aid)


def test_announcement_rooms_deduplicated_and_sorted() -> None:
    data = models.announcement("a", rooms=["hall-b", "atlas", "hall-b", "atlas"], ts=TS)
    assert data["rooms"] == ["atlas", "hall-b"]


def test_announcement_invalid_room_rejected() -> None:
    with pytest.raises(InvalidMessage, match="invalid room id 'Atlas'"):
        models.announcement("a", rooms=["atlas", "Atlas"], ts=TS)


def test_announcement_room_limit_counts_distinct_rooms() -> None:
    limit = models.MAX_ROOMS_PER_ANNOUNCEMENT
    rooms = [f"r{i}" for i in range(limit)]
    assert len(models.announcement("a", rooms=rooms + rooms, ts=TS)["rooms"]) == limit
    with pytest.raises(InvalidMessage, match=f"at most {limit} rooms"):
        models.announcement("a", rooms=[*rooms, "one-more"], ts=TS)


@pytest.mark.parametrize("priority", list(Priority))
def test_announcement_priorities(priority: Priority) -> None:
    assert models.announcement("a", priority=priority.value, ts=TS)["priority"] == priority.value


def test_unknown_priority_names_every_valid_one() -> None:
    with pytest.raises(InvalidMessage) as info:
        models.announcement("a", priority="urgent", ts=TS)
    message = info.value.message
    assert "unknown priority 'urgent'" in message
    for priority in Priority:
        assert priority.value in message


@pytest.mark.parametrize("expires_at", [TS, TS - 1])
def test_announcement_must_expire_after_posting(expires_at: int) -> None:
    with pytest.raises(InvalidMessage, match="expire after it is posted"):
        models.announcement("a", ts=TS, expires_at=expires_at)


def test_announcement_expiry_after_ts_kept() -> None:
    assert models.announcement("a", ts=TS, expires_at=TS + 1)["expires_at"] == TS + 1


@pytest.mark.parametrize("text", ["", "x" * (MAX_TEXT + 1), "tab\tok but bell\a"])
def test_announcement_text_validated(text: str) -> None:
    with pytest.raises(InvalidMessage):
        models.announcement(text, ts=TS)


def test_announcement_is_json_plain() -> None:
    data = models.announcement("a", priority=Priority.EMERGENCY, ts=TS)
    assert type(data["priority"]) is str


# ---- announcement_channels -----------------------------------------------------------------------


def test_announcement_channels() -> None:
    assert models.announcement_channels([]) == [keys.VENUE]
    assert models.announcement_channels(["atlas", "hall-b"]) == ["room:atlas", "room:hall-b"]
