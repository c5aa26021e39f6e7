"""The `feed` command: serve, publish, watch.

Exit status: 0 done; 1 Redis or the server unreachable; 2 bad input (one line on stderr, never a
traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feed import embedded, keys, logs, models, zones
from feed.errors import ConfigError, FeedError, InvalidMessage, NotFound, Unavailable
from feed.program import zone_info
from feed.settings import LOG_LEVELS, Settings, load, load_with_sources
from publisher import tokens
from publisher.tokens import Role

if TYPE_CHECKING:
    from publisher.api import Publisher

EXIT_UNAVAILABLE = 1
EXIT_INVALID = 2
MAX_LISTED = 20  # changes listed after an import


MAX_NOTES = 5  # repairs and skips listed after an import (all are counted)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        # One line, as every other refusal: the usage block buries what is wrong.
        self.exit(EXIT_INVALID, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", help="Redis to use (else FEED_REDIS_URL, else the embedded one)")
    p.add_argument("--data-dir", type=Path, help="folder of the embedded Redis (default ./var)")
    p.add_argument("--config", type=Path, help="TOML settings file (else FEED_CONFIG)")


def _program_and_people(sub: Any) -> None:
    """`feed schedule ...` and `feed token ...`."""
    schedule = sub.add_parser("schedule", help="the conference program")
    what_schedule = schedule.add_subparsers(dest="what", required=True, parser_class=_Parser)
    imp = what_schedule.add_parser(
        "import", help="import a frab XML, schedule.json or pretalx widget JSON export"
    )
    imp.add_argument("file", type=Path)
    _import_options(imp)
    follow = what_schedule.add_parser(
        "follow", help="fetch the program from the conference tool's URL and keep it current"
    )
    follow.add_argument(
        "url", help="the public export, e.g. https://.../schedule/export/schedule.json"
    )
    follow.add_argument(
        "--every", type=float, default=300.0, help="seconds between fetches (default 300)"
    )
    follow.add_argument("--log-level", choices=LOG_LEVELS)
    _import_options(follow)

    token = sub.add_parser("token", help="tokens for operators, moderators and admins")
    what_token = token.add_subparsers(dest="what", required=True, parser_class=_Parser)
    create = what_token.add_parser("create", help="create a token (printed on the last line)")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--room", action="append", default=[], help="an operator's room (repeat)")
    create.add_argument("--name", default="", help="who or what it is for")
    _common(create)
    _common(what_token.add_parser("list", help="list tokens (never their secrets)"))
    revoke = what_token.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("id", help="the token's id, as `feed token list` shows it")
    _common(revoke)


def _import_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--zone",
        dest="venue_zone",
        help="the venue's IANA time zone (needed when the file names none)",
    )
    p.add_argument("--title", help="the conference's name, for formats that do not give it")
    p.add_argument(
        "--strict", action="store_true", help="refuse the file instead of repairing or skipping"
    )
    _common(p)


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="feed", description="Live session feed of a conference venue.")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="serve websockets and HTTP (starts an embedded Redis)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--log-level", choices=LOG_LEVELS)
    serve.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    serve.add_argument(
        "--demo", action="store_true", help="play the Smart City Expo Casablanca 2019 demo"
    )
    _common(serve)
    demo = sub.add_parser("demo", help="the same as `feed serve --demo`")
    demo.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, help="port to listen on (default 8080)")
    demo.add_argument("--log-level", choices=LOG_LEVELS)
    demo.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
    _common(demo)

    config = sub.add_parser("config", help="the effective configuration")
    config_sub = config.add_subparsers(dest="action", required=True, parser_class=_Parser)
    check = config_sub.add_parser(
        "check", help="print the effective settings and where each comes from; check Redis"
    )
    check.add_argument("--host")
    check.add_argument("--port", type=int)
    check.add_argument("--workers", type=int)
    check.add_argument("--log-level", choices=LOG_LEVELS)
    _common(check)

    bench = sub.add_parser(
        "bench",
        help="measure fan-out: thousands of clients, beside a naive baseline (docs/performance.md)",
    )
    from web.bench import add_arguments  # noqa: PLC0415 - light: argparse only

    add_arguments(bench)

    publish = sub.add_parser("publish", help="publish a room status or an announcement")
    what = publish.add_subparsers(dest="what", required=True, parser_class=_Parser)
    status = what.add_parser("status", help="set a room's status")
    status.add_argument("room", help="room id, e.g. atlas")
    status.add_argument("status", help=", ".join(s.value for s in models.Status))
    status.add_argument("--delay", type=int, default=0, help="minutes late (default 0)")
    status.add_argument("--session", help="id of the session this status is about")
    status.add_argument("--to", dest="moved_to", help="with 'moved': the room it moved to")
    _common(status)
    announce = what.add_parser("announce", help="post an announcement")
    announce.add_argument("text")
    announce.add_argument(
        "--room", action="append", default=[], help="aim at a room (repeat); default everyone"
    )
    announce.add_argument("--priority", default="info", help="info, important or emergency")
    announce.add_argument("--expires", type=float, help="minutes until it disappears")
    _common(announce)
    retract = what.add_parser("retract", help="withdraw an announcement")
    retract.add_argument("id", help="the id printed when it was announced")
    retract.add_argument("--room", action="append", default=[], help="rooms it was aimed at")
    _common(retract)

    _program_and_people(sub)
    watch = sub.add_parser("watch", help="print a channel's snapshot and live events")
    watch.add_argument(
        "channels", nargs="*", help="venue, room:<id> or a room id, ... (default: all)"
    )
    watch.add_argument("--url", default="http://127.0.0.1:8080", help="the feed server")
    watch.add_argument("--json", action="store_true", help="print raw messages as JSON lines")
    return top


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "venue_zone", None):
        try:
            zone_info(args.venue_zone)
        except InvalidMessage as exc:  # named as the user typed it, not as the setting is
            raise InvalidMessage(f"--zone: {exc.message}") from None
    return {k: v for k, v in vars(args).items() if k in Settings.__dataclass_fields__}


def _settings(args: argparse.Namespace) -> Settings:
    return load(_flags(args), config_file=getattr(args, "config", None))


SECRET_SETTINGS = ("redis_url",)


async def _config_check(args: argparse.Namespace) -> str:
    """The effective settings with their sources (secrets masked), then whether Redis answers.
    Bad settings stop before this (exit 2); an unreachable Redis raises Unavailable (exit 1)."""
    from feed.bus import Bus, redacted  # noqa: PLC0415

    settings, sources = load_with_sources(_flags(args), config_file=getattr(args, "config", None))
    lines = ["precedence: flags, then FEED_* variables, then the TOML file, then defaults"]
    for name, source in sources.items():
        value = getattr(settings, name)
        shown = redacted(value) if name in SECRET_SETTINGS and value else value
        lines.append(f"  {name:<24} {'' if shown is None else shown!s:<40} {source}")
    zones.prefer(settings.tzdata)
    lines.append(zones.summary(zones.trusted(), settings.venue_zone, int(time.time() * 1000)))
    if settings.redis_url is None:
        url = embedded.discover(settings.data_dir)
        where = settings.data_dir.resolve()
        if url is None:
            lines.append(f"redis: embedded, in {where}; not running (`feed serve` starts it)")
            return "\n".join(lines)
        lines.append(f"redis: embedded, in {where}; running")
    else:
        url = settings.redis_url
    bus = Bus(url, history=settings.history)
    try:
        await bus.ping()
        policy = await bus.eviction_policy()
    except Unavailable as exc:
        raise Unavailable("\n".join([*lines, f"redis: {exc.message}"])) from None
    finally:
        await bus.aclose()
    lines.append(f"redis: {redacted(url)} answers; maxmemory-policy {policy or 'unknown'}")
    if policy not in (None, "noeviction"):
        raise ConfigError(
            "\n".join(lines) + f"\nRedis may evict keys (maxmemory-policy {policy}): set"
            " noeviction, or changes may be lost under memory pressure"
        )
    return "\n".join(lines)


def _redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    url = embedded.discover(settings.data_dir)
    if url is None and embedded.owned(settings.data_dir):
        raise Unavailable(
            f"the feed serve in {settings.data_dir.resolve()} is running, but its embedded Redis"
            " does not answer: it starts it again within seconds; try again in a moment"
        )
    if url is None:
        raise Unavailable(
            f"no running `feed serve` with an embedded Redis in {settings.data_dir.resolve()};"
            " start one from this folder, pass the folder it keeps its Redis in with --data-dir"
            " (the demo's: --data-dir var-demo), or --redis-url (or set FEED_REDIS_URL)"
        )
    return url


def _publisher(settings: Settings) -> Publisher:
    """The Publisher of the commands that publish, on the Redis `settings` lead to."""
    from publisher.api import Publisher  # noqa: PLC0415 - keeps `feed watch` start-up light

    return Publisher(
        _redis_url(settings), history=settings.history, min_replicas=settings.redis_min_replicas
    )


async def _publish(args: argparse.Namespace, settings: Settings) -> str:
    async with _publisher(settings) as pub:
        if args.what == "status":
            done = await pub.status_of_program_room(
                args.room,
                args.status,
                delay=args.delay,
                session=args.session,
                moved_to=args.moved_to,
            )
            return f"{done.channel} #{done.seq}: {args.status}" + (
                f" +{args.delay} min" if args.delay else ""
            )
        if args.what == "announce":
            if args.expires is not None and not args.expires > 0:
                raise InvalidMessage(
                    f"--expires is in minutes and must be over 0, not {args.expires:g}"
                )
            await pub.check_rooms(args.room)
            expires = args.expires * 60 if args.expires is not None else None
            data = await pub.announce(
                args.text, rooms=args.room, priority=args.priority, expires_in=expires
            )
            where = ", ".join(data["rooms"]) or "everyone"
            return f"announcement {data['id']} [{data['priority']}] sent to {where}"
        await pub.retract(args.id, rooms=args.room)
        return f"announcement {args.id} withdrawn"


async def _schedule(args: argparse.Namespace, settings: Settings) -> str:
    if args.what == "follow":
        return await _follow(args, settings)
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise InvalidMessage(f"cannot read {args.file}: {exc.strerror}") from None
    async with _publisher(settings) as pub:
        result = await pub.import_program(
            data,
            source=str(args.file),
            venue_zone=settings.venue_zone,
            title=args.title,
            strict=args.strict,
        )
    return _import_summary(result)


def _import_summary(result: dict[str, Any]) -> str:
    """The summary line (its form is a contract), what was repaired or skipped, a zone change,
    then the first changes."""
    conference = result["conference"]
    lines = [
        f"imported {conference['title']} ({conference['timezone']}): {result['rooms']} rooms,"
        f" {result['sessions']} sessions; {len(result['changes'])} changes since the last import"
    ]
    report = result["report"]
    for count, notes, verb in (
        (report["repaired"], report["repairs"], "repaired"),
        (report["skipped"], report["skips"], "skipped"),
    ):
        if count:
            lines.append(f"{verb} {count} {'entry' if count == 1 else 'entries'}:")
            lines += [f"  {n['where']}: {n['what']}" for n in notes[:MAX_NOTES]]
            if count > MAX_NOTES:
                lines.append(f"  ... and {count - MAX_NOTES} more")
    if zone := result.get("zone_changed"):
        lines.append(
            f"the zone is now {zone['new']} (was {zone['old']}): every time is read again in it;"
            " the printed times are the same, so no session counts as changed"
        )
    lines += [
        f"  {c['kind']:<9} {c['session']}  {c['title']}" for c in result["changes"][:MAX_LISTED]
    ]
    if len(result["changes"]) > MAX_LISTED:
        lines.append(f"  ... and {len(result['changes']) - MAX_LISTED} more")
    return "\n".join(lines)


async def _follow(args: argparse.Namespace, settings: Settings) -> str:
    """`feed schedule follow URL`: runs until SIGTERM or Ctrl-C, then stops cleanly (exit 0)."""
    import signal  # noqa: PLC0415

    from publisher.follow import Follower  # noqa: PLC0415 - aiohttp only where it is needed

    logs.setup(args.log_level or settings.log_level, style=settings.log_format)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with _publisher(settings) as pub:
        follower = Follower(
            pub,
            args.url,
            every=args.every,
            venue_zone=settings.venue_zone,
            title=args.title,
            strict=args.strict,
        )
        await follower.run(stop)
    st = follower.status
    return f"stopped following {args.url}: {st.failures} failed fetches; last state {st.state}"


def _channels(names: list[str]) -> list[str]:
    """`feed watch` channels: `venue`, `room:<id>`, or a bare room id (`atlas`)."""
    return [
        name if name == keys.VENUE or name.startswith(keys.ROOM_PREFIX) else keys.room_channel(name)
        for name in names
    ]


async def _token(args: argparse.Namespace, settings: Settings) -> str:
    from feed.bus import Bus  # noqa: PLC0415

    bus = Bus(_redis_url(settings))
    try:
        if args.what == "create":
            secret, token = await tokens.create(bus, args.role, args.room, args.name)
            anywhere = "no room" if token.role == "screen" else "every room"
            scope = ", ".join(token.rooms) or anywhere
            how = (
                "; open the screen with #token=<this token> at the end of its address"
                if token.role == "screen"
                else ""
            )
            return (
                f"{token.role} token {token.id} for {scope}"
                + (f" ({token.name})" if token.name else "")
                + f"{how}; shown once, keep it safe:\n{secret}"
            )
        if args.what == "list":
            rows = [
                f"{t.id}  {t.role:<9}  {','.join(t.rooms) or '*':<20}  {t.created}  {t.name}"
                for t in await tokens.list_all(bus)
            ]
            return "\n".join(rows) if rows else "no tokens yet: `feed token create --role ...`"
        await tokens.revoke(bus, args.id)
        return f"token {args.id} revoked"
    finally:
        await bus.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "bench":
            from web.bench import main as bench  # noqa: PLC0415

            return bench(args)
        settings = _settings(args) if args.command not in ("watch", "config") else None
        if settings is not None:
            zones.prefer(settings.tzdata)  # every venue time this process reads comes from it
        if args.command in ("serve", "demo"):
            assert settings is not None
            from web import server  # noqa: PLC0415 - aiohttp only where it is needed

            logs.setup(
                settings.log_level, style=settings.log_format, filters=(server.ClientFaults(),)
            )
            server.run(settings, demo=args.command == "demo" or args.demo)
            return 0
        if args.command == "config":
            print(asyncio.run(_config_check(args)))
            return 0
        if args.command in ("publish", "schedule", "token"):
            assert settings is not None
            run = {"publish": _publish, "schedule": _schedule, "token": _token}[args.command]
            print(asyncio.run(run(args, settings)))
            return 0
        from web.watch import Watcher  # noqa: PLC0415

        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(Watcher(args.url, _channels(args.channels), raw=args.json).run())
        return 0
    except (InvalidMessage, NotFound, ConfigError) as exc:
        print(f"feed {args.command}: {exc.message}", file=sys.stderr)
        return EXIT_INVALID
    except FeedError as exc:
        print(f"feed {args.command}: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except OSError as exc:  # e.g. the port is taken
        print(f"feed {args.command}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
