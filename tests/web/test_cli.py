"""The `feed` command line: what an operator sees on success and on every kind of mistake."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from feed.bus import Bus
from feed.embedded import RedisProcess, free_port
from feed.errors import Unauthorized
from publisher import tokens
from tests.conftest import feed_command
from web.cli import _channels


def feed(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")}
    done = subprocess.run(
        feed_command(*args),
        cwd=cwd,
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def assert_one_clear_line(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


async def test_publish_status_lands_in_redis(redis: RedisProcess) -> None:
    code, out, err = feed("publish", "status", "atlas", "delayed", "--delay", "10", "--session",
                          "s-42", "--redis-url", redis.url)  # fmt: skip
    assert (code, err) == (0, "")
    assert out.strip() == "room:atlas #1: delayed +10 min"
    bus = Bus(redis.url)
    try:
        synced = await bus.sync("room:atlas")
    finally:
        await bus.aclose()
    assert synced.seq == 1
    assert synced.state["status"] == "delayed" and synced.state["delay"] == 10
    assert synced.state["session"] == "s-42"


async def test_publish_announce_to_rooms_and_everyone(redis: RedisProcess) -> None:
    code, out, _ = feed("publish", "announce", "Salle pleine", "--room", "atlas", "--room",
                        "orion", "--priority", "important", "--redis-url", redis.url)  # fmt: skip
    assert code == 0 and "sent to atlas, orion" in out
    code, _, err = feed("publish", "announce", "Évacuation", "--priority", "emergency",
                        "--expires", "30", "--redis-url", redis.url)  # fmt: skip
    assert code == 2 and "until it is retracted" in err
    code, out, _ = feed("publish", "announce", "Évacuation", "--priority", "emergency",
                        "--redis-url", redis.url)  # fmt: skip
    assert code == 0 and "sent to everyone" in out
    announcement_id = out.split()[1]
    bus = Bus(redis.url)
    try:
        venue = await bus.sync("venue")
        orion = await bus.sync("room:orion")
        (note,) = venue.state["announcements"]
        assert note["id"] == announcement_id and note["priority"] == "emergency"
        assert note["expires_at"] is None  # an emergency stays until retracted
        assert [a["text"] for a in orion.state["announcements"]] == ["Salle pleine"]
        code, out, _ = feed("publish", "retract", announcement_id, "--redis-url", redis.url)
        assert code == 0
        assert (await bus.sync("venue")).state["announcements"] == []
    finally:
        await bus.aclose()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status", "atlas", "bogus"], "use one of upcoming, starting, live, delayed, full"),
        (["status", "Atlas Hall", "live"], "invalid room id 'Atlas Hall'"),
        (["status", "atlas", "delayed", "--delay", "-5"], "delay must be between 0"),
        (["status", "atlas", "live", "--to", "orion"], "only meaningful with the status 'moved'"),
        (["announce", "   "], "text must be non-empty"),
        (["announce", "hello", "--priority", "urgent"], "use one of info, important, emergency"),
        (["announce", "hello", "--expires", "0"], "--expires is in minutes and must be over 0"),
        (
            ["announce", "hello", "--expires", "-3"],
            "--expires is in minutes and must be over 0, not -3",
        ),
        (["status", "atlas", "moved"], "'moved' needs the room it moved to (--to ROOM"),
        (["status", "atlas", "live", "--delay", "soon"], "invalid int value: 'soon'"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    redis: RedisProcess, args: list[str], expected: str
) -> None:
    code, out, err = feed("publish", *args, "--redis-url", redis.url)
    assert code == 2 and out == ""
    assert expected in err
    assert "Traceback" not in err


def test_unreachable_redis_exits_1_with_one_clear_line() -> None:
    with socket.socket() as s:  # a port that is certainly closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        code, out, err = feed("publish", "status", "atlas", "live", "--redis-url",
                              f"redis://127.0.0.1:{port}/0")  # fmt: skip
    assert code == 1 and out == ""
    assert f"cannot use Redis at redis://127.0.0.1:{port}/0" in err
    assert_one_clear_line(err)


def test_publish_without_a_running_server_says_so(tmp_path: Path) -> None:
    code, _, err = feed("publish", "status", "atlas", "live", cwd=tmp_path)
    assert code == 1
    assert "no running `feed serve`" in err and "--redis-url" in err
    assert_one_clear_line(err)


def test_bad_settings_exit_2_with_one_clear_line(tmp_path: Path) -> None:
    code, _, err = feed("serve", env={"FEED_LOG_LEVEL": "verbose"}, cwd=tmp_path)
    assert code == 2 and "FEED_LOG_LEVEL" in err
    assert_one_clear_line(err)
    (tmp_path / "feed.toml").write_text("prot = 8080\n")
    code, _, err = feed("serve", "--config", "feed.toml", cwd=tmp_path)
    assert code == 2 and "unknown setting 'prot'" in err


def test_serve_on_a_taken_port_exits_1(redis: RedisProcess, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = feed("serve", "--port", port, "--redis-url", redis.url, cwd=tmp_path)
    assert code == 1 and "address already in use" in err.lower()
    assert "Traceback" not in err


def test_usage_errors_exit_2_with_one_line() -> None:
    code, _, err = feed()
    assert code == 2 and err.startswith("feed: the following arguments are required: command")
    assert err.rstrip().endswith("(see `feed --help`)")
    assert_one_clear_line(err)
    code, _, err = feed("publish", "status", "atlas")
    assert code == 2 and "required" in err and "feed publish status --help" in err
    assert_one_clear_line(err)


def test_a_setting_that_is_not_a_number_says_so_in_words(tmp_path: Path) -> None:
    code, _, err = feed("serve", cwd=tmp_path, env={"FEED_PORT": "abc"})
    assert code == 2
    assert (
        err.strip()
        == "feed serve: FEED_PORT: invalid value 'abc' for port: expected a whole number"
    )


def test_commands_in_a_demo_folder_say_how_to_find_its_redis(tmp_path: Path) -> None:
    code, _, err = feed("token", "create", "--role", "admin", cwd=tmp_path)
    assert code == 1 and "--data-dir" in err and "--redis-url" in err
    assert_one_clear_line(err)


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "feed"  # where pip puts it, beside the interpreter
    port = free_port()  # any argument error is enough to prove the entry point runs
    done = subprocess.run(
        [str(script), "serve", "--port", f"{port}x"], capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "invalid int value" in done.stderr
    assert_one_clear_line(done.stderr)


EXPO = Path(__file__).resolve().parents[1] / "web" / "fixtures" / "expo.json"


def test_schedule_import_reports_what_it_did(redis: RedisProcess, tmp_path: Path) -> None:
    code, out, err = feed("schedule", "import", str(EXPO), "--redis-url", redis.url)
    assert (code, err) == (0, "")
    assert out.startswith("imported Smart City Expo Casablanca 2019 (Africa/Casablanca): 2 rooms,")
    broken = tmp_path / "broken.xml"
    broken.write_text("<schedule><conference><title>x</title></conference><day")
    code, out, err = feed("schedule", "import", str(broken), "--redis-url", redis.url)
    assert code == 2 and out == "" and err.startswith(f"feed schedule: {broken}")
    assert_one_clear_line(err)
    code, _, err = feed("schedule", "import", str(tmp_path / "missing.json"), "--redis-url",
                        redis.url)  # fmt: skip
    assert code == 2 and "cannot read" in err and "No such file" in err
    code, _, err = feed("schedule", "import", str(EXPO), "--zone", "Mars/Olympus",
                        "--redis-url", redis.url)  # fmt: skip
    assert code == 2 and err.startswith("feed schedule: --zone: unknown time zone 'Mars/Olympus'")
    assert "--venue-zone" not in err
    assert_one_clear_line(err)


async def test_tokens_are_created_listed_and_revoked(redis: RedisProcess) -> None:
    code, out, err = feed("token", "create", "--role", "operator", "--room", "atlas",
                          "--name", "door tablet", "--redis-url", redis.url)  # fmt: skip
    assert (code, err) == (0, "")
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("feed_")
    token_id = secret.split("_")[1]
    code, out, _ = feed("token", "list", "--redis-url", redis.url)
    assert code == 0 and token_id in out and "operator" in out and "door tablet" in out
    assert secret.split("_", 2)[2] not in out  # never the secret itself
    bus = Bus(redis.url)
    try:
        assert (await tokens.verify(bus, secret)).rooms == ("atlas",)
        code, out, _ = feed("token", "revoke", token_id, "--redis-url", redis.url)
        assert code == 0
        with pytest.raises(Unauthorized):
            await tokens.verify(bus, secret)
    finally:
        await bus.aclose()
    code, _, err = feed("token", "revoke", token_id, "--redis-url", redis.url)
    assert code == 2 and "no token" in err
    code, _, err = feed("token", "create", "--role", "operator", "--redis-url", redis.url)
    assert code == 2 and "at least one --room" in err


def test_config_check_shows_each_setting_its_source_and_redis(
    redis: RedisProcess, tmp_path: Path
) -> None:
    conf = tmp_path / "feed.toml"
    conf.write_text("history = 50\napi_rate = 30\nport = 7000\n", encoding="utf-8")
    args = ["--config", str(conf), "--port", "7100", "--redis-url", redis.url]
    code, out, err = feed("config", "check", *args, cwd=tmp_path, env={"FEED_API_RATE": "60"})
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:-1]}
    assert rows["port"] == ["7100", "--port"]  # the flag wins over the file
    assert rows["api_rate"] == ["60", "FEED_API_RATE"]  # the environment over the file
    assert rows["history"] == ["50", str(conf)]
    assert rows["host"] == ["127.0.0.1", "default"]
    assert "answers; maxmemory-policy noeviction" in out.splitlines()[-1]


def test_config_check_masks_secrets_and_fails_clearly(tmp_path: Path) -> None:
    code, out, err = feed(
        "config", "check", "--redis-url", "redis://:hunter2@127.0.0.1:1/0", cwd=tmp_path
    )
    assert code == 1
    assert "hunter2" not in out + err
    assert "redis_url" in err and "redis://:***@127.0.0.1:1/0" in err
    code, _, err = feed("config", "check", cwd=tmp_path, env={"FEED_WORKERS": "none"})
    assert code == 2 and "FEED_WORKERS" in err


DIRTY = Path(__file__).resolve().parents[1] / "publisher" / "fixtures" / "dirty"


def test_an_import_reports_what_it_repaired_and_skipped(redis: RedisProcess) -> None:
    merged = DIRTY / "merged-c3voc.json"
    code, out, err = feed("schedule", "import", str(merged), "--redis-url", redis.url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == (
        "imported Merged Congress (Europe/Berlin): 3 rooms, 7 sessions; 0 changes since the"
        " last import"
    )
    assert lines[1] == "repaired 4 entries:"
    assert lines[2].startswith('  schedule.conference.days[0].rooms["Saal Granville"][0]: its room')
    assert "skipped 2 entries:" in lines
    assert (
        lines[-1] == '  schedule.conference.days[0].rooms["Workshop Tent"][2]: no start; left out'
    )
    # again: the same ids, nothing changed
    code, out, _ = feed("schedule", "import", str(merged), "--redis-url", redis.url)
    assert code == 0 and "; 0 changes since the last import" in out.splitlines()[0]
    code, out, err = feed("schedule", "import", str(merged), "--strict", "--redis-url", redis.url)
    assert code == 2 and out == "" and "merged-c3voc.json: " in err
    assert_one_clear_line(err)


def test_an_import_needs_a_zone_and_says_a_zone_change_in_one_line(
    redis: RedisProcess, tmp_path: Path
) -> None:
    xml = (DIRTY / "texts.xml").read_text(encoding="utf-8")
    bare = tmp_path / "bare.xml"
    bare.write_text(xml.replace("<time_zone_name>Europe/Berlin</time_zone_name>", ""), "utf-8")
    code, out, err = feed("schedule", "import", str(bare), "--redis-url", redis.url)
    assert code == 2 and out == ""
    assert "names no time zone" in err and "--zone" in err
    assert_one_clear_line(err)
    code, out, err = feed("schedule", "import", str(bare), "--redis-url", redis.url,
                          env={"FEED_VENUE_ZONE": "UTC"})  # fmt: skip
    assert code == 0 and out.startswith("imported Texts as written (UTC): 1 rooms, 4 sessions")
    code, out, err = feed("schedule", "import", str(bare), "--zone", "US/Eastern",
                          "--redis-url", redis.url)  # fmt: skip
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "imported Texts as written (US/Eastern): 1 rooms, 4 sessions; 0 changes since the last"
        " import",
        "the zone is now US/Eastern (was UTC): every time is read again in it; the printed"
        " times are the same, so no session counts as changed",
    ]


def test_publishing_to_rooms_not_in_the_program_is_refused(redis: RedisProcess) -> None:
    code, _, _ = feed("schedule", "import", str(EXPO), "--redis-url", redis.url)
    assert code == 0
    for args in (
        ["status", "orion", "live"],
        ["announce", "Salle pleine", "--room", "atlas", "--room", "orion"],
        ["status", "atlas", "moved", "--to", "orion"],
    ):
        code, out, err = feed("publish", *args, "--redis-url", redis.url)
        assert code == 2 and out == "", args
        assert (
            "no room 'orion' in the program (GET /api/schedule lists its rooms: anfa, atlas)" in err
        )
        assert_one_clear_line(err)
    code, out, err = feed("publish", "status", "atlas", "moved", "--to", "anfa",
                          "--redis-url", redis.url)  # fmt: skip
    assert (code, err) == (0, "") and out.strip() == "room:atlas #2: moved"


def test_watch_takes_a_bare_room_id() -> None:
    assert _channels(["atlas", "venue", "room:anfa"]) == ["room:atlas", "venue", "room:anfa"]
    code, _, err = feed("watch", "Not A Room", "--url", "http://127.0.0.1:9")
    assert code == 2 and "invalid room id 'Not A Room'" in err
    assert_one_clear_line(err)
