"""The server's reducer and the publisher's check on the vectors the page's reducer also runs
(tests/reducer_vectors.json; the page's side is tests/web/test_reducer_pages.py)."""

from __future__ import annotations

import copy
import itertools
import unicodedata
from pathlib import Path
from typing import Any

import orjson
import pytest

from feed import models, reducer
from feed.embedded import RedisProcess
from feed.errors import InvalidMessage
from publisher import Publisher

VECTORS = Path(__file__).resolve().parent.parent / "reducer_vectors.json"
# Read as the server reads envelopes (orjson): 5.0 stays a float here, as a browser cannot keep it.
CASES: list[dict[str, Any]] = orjson.loads(VECTORS.read_bytes())["cases"]


def strictly_equal(got: Any, want: Any, where: str = "state") -> None:
    """Equal, and of the same JSON types: 5 == 5.0 and 1 == True would hide a difference that
    a browser (or orjson writing the state to Redis) shows."""
    assert type(got) is type(want), f"{where}: {got!r} is not {want!r}"
    if isinstance(want, dict):
        assert got.keys() == want.keys(), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            strictly_equal(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{where}: {len(got)} items, not {len(want)}"
        for i, (one, other) in enumerate(zip(got, want, strict=True)):
            strictly_equal(one, other, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def start(case: dict[str, Any]) -> models.State:
    return {**reducer.initial(case["channel"]), **copy.deepcopy(case.get("start", {}))}


def steps() -> list[tuple[str, str, dict[str, Any]]]:
    return [(c["channel"], c["name"], s) for c in CASES for s in c["steps"]]


def test_the_vectors_cover_every_known_kind_both_ways() -> None:
    seen = {(s["kind"], s["publishable"]) for _, _, s in steps()}
    for kind in models.Kind:
        assert (kind.value, True) in seen and (kind.value, False) in seen, kind
    assert any(s["kind"] not in set(models.Kind) for _, _, s in steps())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_reducer_gives_the_expected_states(case: dict[str, Any]) -> None:
    state = start(case)
    want = copy.deepcopy(state)
    for i, step in enumerate(case["steps"]):
        before = copy.deepcopy(state)
        state = reducer.apply(state, step["kind"], step["data"], step["ts"])
        want = {**want, **step["expect"]}
        strictly_equal(state, want, f"step {i} ({step['kind']} {step.get('note', '')})")
        assert before == state or step["expect"], "an unchanged state changed"
        # The stored state is JSON: it must survive orjson as it is.
        assert orjson.loads(orjson.dumps(state)) == state


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_reducer_never_changes_what_it_is_given(case: dict[str, Any]) -> None:
    state = start(case)
    for step in case["steps"]:
        given, data = copy.deepcopy(state), copy.deepcopy(step["data"])
        after = reducer.apply(state, step["kind"], step["data"], step["ts"])
        assert state == given and step["data"] == data
        state = after


@pytest.mark.parametrize(
    ("channel", "step"),
    [(channel, step) for channel, _, step in steps()],
    ids=[f"{name}:{i}" for i, (_, name, _) in enumerate(steps())],
)
def test_the_publisher_refuses_exactly_the_data_that_breaks_its_rules(
    channel: str, step: dict[str, Any]
) -> None:
    if step["publishable"]:
        models.publishable(channel, step["kind"], step["data"])
    else:
        with pytest.raises(InvalidMessage):
            models.publishable(channel, step["kind"], step["data"])


async def test_publish_refuses_them_and_takes_the_rest(redis: RedisProcess) -> None:
    async with Publisher(redis.url) as pub:
        for channel, name, step in steps():
            position = await pub.bus.sync(channel)
            if step["publishable"]:
                done = await pub.publish(channel, step["kind"], step["data"])
                assert done.seq == position.seq + 1, name
                continue
            with pytest.raises(InvalidMessage) as refused:
                await pub.publish(channel, step["kind"], step["data"])
            assert refused.value.message, name
            after = await pub.bus.sync(channel)
            assert (after.epoch, after.seq, after.state) == (
                position.epoch,
                position.seq,
                position.state,
            ), f"{name}: a refused event reached Redis"


@pytest.mark.parametrize(
    ("channel", "kind"),
    [("venue", "status"), ("venue", "program"), ("room:atlas", "schedule")],
)
def test_known_kinds_go_only_on_their_channels(channel: str, kind: str) -> None:
    data = {
        "status": {"status": "live"},
        "program": {"room": {"id": "atlas", "name": "Atlas"}, "sessions": []},
        "schedule": {"etag": "e1"},
    }[kind]
    with pytest.raises(InvalidMessage, match="goes on"):
        models.publishable(channel, kind, data)


def test_an_invisible_announcement_is_refused_saying_why() -> None:
    with pytest.raises(InvalidMessage, match=r"text\['ar'\] must be non-empty") as info:
        models.announcement({"fr": "Bonjour", "ar": "\u200f\u200b"}, ts=1)
    assert "visible" in info.value.message
    assert info.value.field == "text"


def test_the_invisible_table_covers_this_pythons_unicode() -> None:
    """Every control, format and white-space character that this Python's Unicode knows is in
    the frozen table (the browser's side is checked against Chromium's Unicode)."""
    ranges = models.INVISIBLE
    assert all(lo <= hi for lo, hi in ranges)
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(ranges)), "merged, sorted"
    for code in range(0x110000):
        char = chr(code)
        hidden = unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp") or char.isspace()
        if hidden:
            assert not models.visible(char), f"U+{code:04X} counts as visible"
    for lo, hi in ranges:
        assert not models.visible(chr(lo)) and not models.visible(chr(hi))
        if hi < 0x10FFFF:
            assert models.visible(chr(hi + 1)) or any(r[0] == hi + 1 for r in ranges)
