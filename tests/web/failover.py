"""A Redis failover under load, measured (issue 14 §2): a primary, two replicas and three
sentinels on loopback, a `feed serve` on the Sentinel URL, websocket clients following six
rooms, statuses published through the HTTP API at a steady rate with every answer recorded;
then the primary is killed with SIGKILL.

What it checks (and `tests/web/test_failover.py` asserts):
- every room's final state holds its last acknowledged status, or an attempt made after it;
- no client ever sees an event that is not the next seq of its epoch without a snapshot first;
- every client ends with the position and status a fresh client gets;
- publishing is acknowledged again within 10 s of the kill.
What it measures: the time from the kill to the first acknowledged publish, the time the
server's subscription was away (health live false -> true), and the publishes refused.

    .venv/bin/python -m tests.web.failover --clients 1000 --runs 3 --json failover.json

The clients are raw asyncio protocols speaking just enough RFC 6455 (as feed/bench/loadgen.py
does), so that hundreds of them cost the machine little beside the server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from feed.bench.loadgen import client_frame
from feed.embedded import free_port
from tests.conftest import FeedServer, feed_command
from tests.sentinels import Replicated

ROOMS = ("atlas", "anfa", "oasis", "zerktouni", "majorelle", "hassan")
STATUSES = ("starting", "live", "delayed", "full", "live", "ended")
RECOVERY_LIMIT = 10.0  # seconds within which publishing must be acknowledged again


@dataclass
class Follower:
    """What one client saw, checked as it arrives."""

    channels: tuple[str, ...]
    positions: dict[str, tuple[str, int]] = field(default_factory=dict)
    sessions: dict[str, str | None] = field(default_factory=dict)  # the status's session id
    jumps: list[str] = field(default_factory=list)  # events that were not the next seq
    snapshots: int = 0
    events: int = 0
    health: list[tuple[float, bool]] = field(default_factory=list)  # (monotonic, live)
    closed: bool = False

    def message(self, msg: dict[str, Any]) -> None:
        kind, channel = msg.get("type"), str(msg.get("channel"))
        if kind == "snapshot":
            self.snapshots += 1
            self.positions[channel] = (msg["epoch"], msg["seq"])
            self.sessions[channel] = (msg["state"] or {}).get("session")
        elif kind == "event":
            self.events += 1
            held = self.positions.get(channel)
            if held != (msg["epoch"], msg["seq"] - 1):
                self.jumps.append(f"{channel}: held {held}, got {msg['epoch']}#{msg['seq']}")
            self.positions[channel] = (msg["epoch"], msg["seq"])
            if msg["kind"] == "status":
                self.sessions[channel] = msg["data"].get("session")
        elif kind == "subscribed" and self.positions.get(channel) != (msg["epoch"], msg["seq"]):
            self.jumps.append(f"{channel}: subscribed at {msg['epoch']}#{msg['seq']}, "
                              f"held {self.positions.get(channel)}")  # fmt: skip
        elif kind == "health":
            self.health.append((time.monotonic(), bool(msg["live"])))


class RawClient(asyncio.Protocol):
    """One websocket client: handshake, then unmasked frames in, masked frames out."""

    def __init__(self, follower: Follower, host: str) -> None:
        self.follower = follower
        self.host = host
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.follower.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the upgrade"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(bytes(self.buffer[:200]).decode()))
                return
            del self.buffer[: end + 4]
            self.upgraded = True
            self.send({"type": "subscribe", "channels": list(self.follower.channels)})
            self.ready.set_result(None)
        while len(self.buffer) >= 2:
            opcode, size, start = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
            if size == 126:
                if len(self.buffer) < 4:
                    return
                size, start = int.from_bytes(self.buffer[2:4], "big"), 4
            elif size == 127:
                if len(self.buffer) < 10:
                    return
                size, start = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < start + size:
                return
            payload = bytes(self.buffer[start : start + size])
            del self.buffer[: start + size]
            if opcode == 0x1:
                self.follower.message(orjson.loads(payload))
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(client_frame(payload, 0xA))
            elif opcode == 0x8 and self.transport is not None:
                self.transport.close()

    def send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(orjson.dumps(message)))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(b"\x03\xe8", 0x8))
            self.transport.close()


@dataclass
class Report:
    clients: int
    rate: float
    attempts: int = 0
    acknowledged: int = 0
    refused: int = 0  # 503 answers, timeouts and refused connections
    recovery_s: float | None = None  # kill -> first acknowledged publish
    resubscribed_s: float | None = None  # kill -> the server's subscription live again
    refused_after_kill: int = 0
    jumps: list[str] = field(default_factory=list)
    stale_clients: list[str] = field(default_factory=list)
    wrong_rooms: list[str] = field(default_factory=list)
    snapshots_after_kill: int = 0
    epochs_changed: int = 0  # rooms whose epoch after the failover differs from before

    def to_json(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in vars(self).items() if not isinstance(v, list)},
            "jumps": len(self.jumps),
            "stale_clients": len(self.stale_clients),
            "wrong_rooms": len(self.wrong_rooms),
        }


async def run(
    folder: Path, *, clients: int = 300, rate: float = 20.0, before: float = 3.0, after: float = 3.0
) -> Report:
    """The scenario, start to end; everything it starts is stopped before it returns."""
    report = Report(clients, rate)
    topology = Replicated(folder / "redis", replicas=2)
    server: FeedServer | None = None
    try:
        await asyncio.to_thread(topology.start, sentinels=3)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEED_")} | {
            "FEED_API_RATE": "1000000",
            "FEED_LOG_FORMAT": "text",
        }
        server = FeedServer(free_port(), ["--redis-url", topology.sentinel_url], folder, env)
        await asyncio.to_thread(server.start)
        secret = await asyncio.to_thread(token, topology.sentinel_url, env, folder)
        followers, protocols = await _connect(server, clients)
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {secret}"},
            timeout=aiohttp.ClientTimeout(total=5),
        ) as http:
            publishing = _Publishing(http, server.url, rate, report)
            task = asyncio.create_task(publishing.run())
            await asyncio.sleep(before)
            before_kill = await _fresh(server)
            snapshots_before = sum(f.snapshots for f in followers)
            killed = time.monotonic()
            publishing.killed = killed
            topology.primary.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(publishing.acked_again.wait(), 30)
            if publishing.first_ack_after_kill is not None:
                report.recovery_s = round(publishing.first_ack_after_kill - killed, 3)
            await asyncio.sleep(after)
            publishing.stop = True
            await task
        back = [at for f in followers for at, live in f.health if live and at > killed]
        report.resubscribed_s = round(min(back) - killed, 3) if back else None
        fresh = await _settle(server, followers)
        report.snapshots_after_kill = sum(f.snapshots for f in followers) - snapshots_before
        report.epochs_changed = sum(
            1 for ch, (epoch, _, _) in fresh.items() if before_kill[ch][0] != epoch
        )
        _check(report, followers, fresh, publishing)
        for proto in protocols:
            proto.close()
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
        topology.stop()
    return report


def token(url: str, env: dict[str, str], folder: Path) -> str:
    """A moderator token, made with `feed token create` on that Redis URL."""
    done = subprocess.run(
        feed_command("token", "create", "--role", "moderator", "--redis-url", url),
        capture_output=True, text=True, env=env, cwd=folder, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


async def _connect(server: FeedServer, count: int) -> tuple[list[Follower], list[RawClient]]:
    loop = asyncio.get_running_loop()
    followers: list[Follower] = []
    protocols: list[RawClient] = []
    for i in range(count):
        # Two rooms each, so that every room has a third of the clients.
        channels = (f"room:{ROOMS[i % 6]}", f"room:{ROOMS[(i + 3) % 6]}")
        follower = Follower(channels)
        _, proto = await loop.create_connection(
            functools.partial(RawClient, follower, f"127.0.0.1:{server.port}"),
            "127.0.0.1",
            server.port,
        )
        followers.append(follower)
        protocols.append(proto)
    await asyncio.wait_for(asyncio.gather(*(p.ready for p in protocols)), 30)

    def live() -> bool:
        return all(len(f.positions) == len(f.channels) for f in followers)

    deadline = time.monotonic() + 30
    while not live():
        if time.monotonic() > deadline:
            raise TimeoutError("clients did not all get their snapshots")
        await asyncio.sleep(0.05)
    return followers, protocols


class _Publishing:
    """Statuses at a steady rate, each room in turn, each attempt once (the next attempt on a
    room supersedes a refused one), with every answer recorded."""

    def __init__(self, http: aiohttp.ClientSession, url: str, rate: float, report: Report) -> None:
        self.http, self.url, self.rate, self.report = http, url, rate, report
        self.stop = False
        self.killed: float | None = None
        self.first_ack_after_kill: float | None = None
        self.acked_again = asyncio.Event()
        self.attempted: dict[str, list[int]] = {room: [] for room in ROOMS}
        self.acked: dict[str, int] = {}  # room -> the last acknowledged tick

    async def run(self) -> None:
        tick, start, tasks = 0, time.monotonic(), set()
        while not self.stop:
            tick += 1
            task = asyncio.create_task(self._attempt(tick))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, start + tick / self.rate - time.monotonic()))
        await asyncio.gather(*tasks)

    async def _attempt(self, tick: int) -> None:
        room = ROOMS[tick % len(ROOMS)]
        status = STATUSES[(tick // len(ROOMS)) % len(STATUSES)]
        body: dict[str, object] = {"status": status, "session": f"t{tick}"}
        if body["status"] == "delayed":
            body["delay_min"] = 5
        self.attempted[room].append(tick)
        self.report.attempts += 1
        started = time.monotonic()
        try:
            async with self.http.post(
                f"{self.url}/api/rooms/{room}/status", json=body,
                headers={"Idempotency-Key": f"tick-{tick}"},
            ) as answer:  # fmt: skip
                ok = answer.status == 200
                await answer.read()
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if not ok:
            self.report.refused += 1
            if self.killed is not None and started >= self.killed:
                self.report.refused_after_kill += 1
            return
        self.report.acknowledged += 1
        self.acked[room] = max(self.acked.get(room, 0), tick)
        if self.killed is not None and started >= self.killed and self.first_ack_after_kill is None:
            self.first_ack_after_kill = time.monotonic()
            self.acked_again.set()


async def _fresh(server: FeedServer) -> dict[str, tuple[str, int, str | None]]:
    """What a client connecting now gets: each room's (epoch, seq, session)."""
    loop = asyncio.get_running_loop()
    follower = Follower(tuple(f"room:{room}" for room in ROOMS))
    _, proto = await loop.create_connection(
        lambda: RawClient(follower, f"127.0.0.1:{server.port}"), "127.0.0.1", server.port
    )
    try:
        await asyncio.wait_for(proto.ready, 5)
        for _ in range(250):  # 5 s at most
            if len(follower.positions) == len(ROOMS):
                break
            await asyncio.sleep(0.02)
    finally:
        proto.close()
    return {ch: (*follower.positions[ch], follower.sessions.get(ch)) for ch in follower.positions}


async def _settle(
    server: FeedServer, followers: list[Follower], timeout: float = 20.0
) -> dict[str, tuple[str, int, str | None]]:
    """Wait until every client holds what a fresh client gets (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        fresh = await _fresh(server)
        behind = [
            f for f in followers
            if any(f.positions.get(ch) != fresh.get(ch, (None, None))[:2] for ch in f.channels)
        ]  # fmt: skip
        if not behind or time.monotonic() > deadline:
            return fresh
        await asyncio.sleep(0.25)


def _check(
    report: Report,
    followers: list[Follower],
    fresh: dict[str, tuple[str, int, str | None]],
    publishing: _Publishing,
) -> None:
    for index, follower in enumerate(followers):
        report.jumps += [f"client {index}: {jump}" for jump in follower.jumps]
        for ch in follower.channels:
            held = (*follower.positions.get(ch, ("", -1)), follower.sessions.get(ch))
            if follower.closed or held != fresh.get(ch):
                report.stale_clients.append(f"client {index} {ch}: {held} != {fresh.get(ch)}")
    for room in ROOMS:
        _, _, session = fresh.get(f"room:{room}", ("", -1, None))
        tick = int(session[1:]) if session and re.fullmatch(r"t\d+", session) else 0
        last_ack = publishing.acked.get(room, 0)
        if tick < last_ack or tick not in publishing.attempted[room]:
            report.wrong_rooms.append(f"{room}: holds t{tick}, last acknowledged t{last_ack}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args(argv)
    results = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="feed-failover-") as folder:
            report = asyncio.run(run(Path(folder), clients=args.clients, rate=args.rate))
        results.append(report.to_json())
        print(orjson.dumps(results[-1]).decode(), flush=True)
        for line in [*report.jumps, *report.stale_clients, *report.wrong_rooms][:20]:
            print("  ", line)
    recoveries = [r["recovery_s"] for r in results if r["recovery_s"] is not None]
    if recoveries:
        print(f"recovery: median {statistics.median(recoveries):.2f} s, max {max(recoveries):.2f} s"
              f" over {len(recoveries)} run(s)")  # fmt: skip
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    failed = any(r["jumps"] or r["stale_clients"] or r["wrong_rooms"] for r in results)
    return 1 if failed or len(recoveries) < len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
