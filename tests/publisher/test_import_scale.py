"""A 10,000-session, 100-room program imports, and a re-import with 50 changes publishes those
50 and nothing else (figures: `python -m tests.publisher.big_program`, docs/performance.md)."""

from __future__ import annotations

import json

from feed.embedded import RedisProcess
from publisher import Publisher
from tests.publisher.big_program import ROOMS, SESSIONS, program


async def test_a_big_program_and_a_reimport_that_changes_50_sessions(redis: RedisProcess) -> None:
    async with Publisher(redis.url) as pub:
        first = await pub.import_program(json.dumps(program()).encode(), source="big.json")
        assert (first["rooms"], first["sessions"]) == (ROOMS, SESSIONS)
        channels = [f"room:room-{r}" for r in range(ROOMS)]
        before = {ch: (await pub.bus.sync(ch)).seq for ch in channels}
        venue = (await pub.bus.sync("venue")).seq
        again = await pub.import_program(
            json.dumps(program(changed=50)).encode(), source="big.json"
        )
        assert [c["kind"] for c in again["changes"]] == ["retimed"] * 50
        after = {ch: (await pub.bus.sync(ch)).seq for ch in channels}
        moved = sorted(int(ch.split("-")[1]) for ch in channels if after[ch] != before[ch])
        assert moved == list(range(50))  # one program event for each room that changed
        assert all(after[ch] == before[ch] + 1 for ch in channels[:50])
        summary = (await pub.bus.sync("venue")).state["schedule"]
        assert (await pub.bus.sync("venue")).seq == venue + 1
        assert summary is not None and summary["etag"] == again["etag"]
