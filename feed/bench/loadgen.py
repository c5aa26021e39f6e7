"""The benchmark's load generator: thousands of websocket clients in one process.

Each client is an asyncio protocol on a raw socket that speaks just enough RFC 6455 (the opening
handshake, masked frames out, unmasked frames in, ping, close), so that one process can hold
thousands of them while using little CPU per message: the server, not the load generator, should
be what a benchmark measures. Every client checks what it receives: each message's seq is
recorded, so messages lost, duplicated or out of order are counted, and each message's delay
since it was published (the publisher writes its clock into the text) is kept.

A process is driven over a pipe by `feed bench` (web.bench): see `serve`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import resource
import socket
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import orjson

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MARK = "bench "  # the text of a benchmark announcement starts with this, then the publish time
TEXT_MARK = b'"text":"' + MARK.encode()
EVENT = b'{"type":"event",'  # how the server's events start (feed.protocol.Event.frame)


# Linux: bind() picks no port until connect() knows the destination, so a local address serves
# ~28,000 connections per server port rather than ~28,000 in all (closed ones linger in
# TIME_WAIT for a minute, holding their ports across runs).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def _socket_from(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(OSError):  # not Linux: ports are picked at bind, as before
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setblocking(False)
        sock.bind((source, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked frame from a client (RFC 6455 5.3), for payloads under 64 KiB."""
    mask = os.urandom(4)
    n = len(payload)
    header = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else bytes((0x80 | opcode, 0xFE))
    if n >= 126:
        header += n.to_bytes(2, "big")
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big") if n else b""
    return header + mask + masked


@dataclass(slots=True)
class Track:
    """What one client has received of the messages a scenario publishes."""

    base: int = 0  # the channel's seq before the scenario's first message
    got: bytearray = field(default_factory=bytearray)  # got[i]: seq base+1+i arrived
    received: int = 0
    duplicates: int = 0
    reordered: int = 0
    highest: int = 0
    epoch: str | None = None
    subscribed_at: float = 0.0  # when the server last confirmed the subscription
    resumed: bool | None = None  # what that confirmation said
    closes: dict[int, int] = field(default_factory=dict)  # close codes the server sent
    rooms: tuple[str, ...] = ()  # the quiet channels this client follows beside the measured one
    # (epoch, seq) of each of those, to resume them too
    positions: dict[str, tuple[str, int]] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)  # channels not yet confirmed live
    # The last (re)connection's steps, in time.time(): asked, TCP connected, upgraded, subscribed
    steps: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])

    def expect(self, base: int, count: int) -> None:
        self.base, self.got = base, bytearray(count)
        self.received = self.duplicates = self.reordered = 0
        self.highest = base

    def contiguous(self) -> int:
        """The last seq before the first one missing: where a client resumes from."""
        missing = self.got.find(0)
        return self.base + (len(self.got) if missing < 0 else missing)


class WsClient(asyncio.Protocol):
    __slots__ = ("buf", "gen", "open", "track", "transport")

    def __init__(self, gen: Generator, track: Track) -> None:
        self.gen = gen
        self.track = track
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.track.steps[1] = time.time()
        transport.write(self.gen.handshake)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.gen.lost += 1

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            if b" 101 " not in head.split(b"\r\n", 1)[0] or self.gen.accept not in head:
                self.gen.failed += 1
                assert self.transport is not None
                self.transport.abort()
                return
            self.open = True
            self.track.steps[2] = time.time()
            self.gen.opened(self)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, n = buf[pos], buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if size - start < n:
                break
            payload = bytes(buf[start : start + n])
            pos = start + n
            opcode = b0 & 0x0F
            if opcode == 0x1:
                self.gen.message(self, payload)
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(client_frame(payload, 0xA))  # pong
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.track.closes[code] = self.track.closes.get(code, 0) + 1
                if self.transport is not None:
                    self.transport.abort()
                break
        del buf[:pos]

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(orjson.dumps(message)))


class Generator:
    """The clients of one process, and the counters the bench reads back."""

    def __init__(
        self,
        url: str,
        channel: str,
        rooms: tuple[str, ...] = (),
        sources: tuple[str, ...] = (),
        connects_at_once: int = 0,
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        key = base64.b64encode(os.urandom(16))
        self.accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        self.handshake = (
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\n\r\n"
        ).encode()
        self.channel = channel
        # Like door screens and phones: each client follows the measured channel (`venue`) and
        # one or two quiet rooms, whose snapshots and resumes the server serves too.
        self.rooms = rooms
        # Local addresses to connect from, in turn: one address has about 28,000 ports to a
        # server's port, and a closed connection holds its port for a minute (TIME_WAIT).
        self.sources = sources or ("127.0.0.1",)
        self._next_source = 0
        # Connections this process opens at once; 0: all of them. After a wifi blip every phone
        # tries at once, so by default nothing here queues them: what a storm measures is the
        # server (its accept queue, upgrades, subscriptions), not the load generator's queue.
        self.connects_at_once = connects_at_once
        self.clients: list[WsClient] = []
        self.tracks: list[Track] = []
        self.latencies = array("d")  # milliseconds, one per message received
        self.last_received = 0.0
        self.expected = 0  # messages this process's clients should receive in the scenario
        self.received = 0
        self.failed = 0  # connections refused or handshakes that failed
        self.lost = 0  # connections lost
        self._done: asyncio.Future[None] | None = None
        self._pending_subs: dict[WsClient, asyncio.Future[None]] = {}

    # ---- connections ------------------------------------------------------------------------

    async def connect(self, count: int, within: float) -> dict[str, Any]:
        """Open `count` more clients, each subscribed to the channel."""
        first = len(self.tracks)
        tracks = [Track(rooms=self._rooms_for(first + i)) for i in range(count)]
        self.tracks.extend(tracks)
        return await self._open_all(tracks, resume=False, within=within)

    def _rooms_for(self, i: int) -> tuple[str, ...]:
        if not self.rooms:
            return ()
        one = self.rooms[i % len(self.rooms)]
        if i % 2 or len(self.rooms) < 2:
            return (one,)
        return (one, self.rooms[(i + 1) % len(self.rooms)])

    async def _open_all(
        self, tracks: list[Track], *, resume: bool, within: float
    ) -> dict[str, Any]:
        started = time.time()
        slots = asyncio.Semaphore(self.connects_at_once) if self.connects_at_once else None
        results = await asyncio.gather(
            *(self._open(t, slots, resume, started + within) for t in tracks)
        )
        ok = sum(results)
        return {"clients": ok, "failed": len(tracks) - ok, "seconds": time.time() - started}

    async def _open(
        self, track: Track, slots: asyncio.Semaphore | None, resume: bool, deadline: float
    ) -> bool:
        loop = asyncio.get_running_loop()
        delay = 0.05
        while time.time() < deadline:
            async with slots if slots is not None else contextlib.nullcontext():
                subscribed = loop.create_future()
                client = WsClient(self, track)
                self._pending_subs[client] = subscribed
                source = self.sources[self._next_source % len(self.sources)]
                self._next_source += 1
                track.steps[0] = time.time()
                try:
                    sock = _socket_from(source)
                    try:
                        await loop.sock_connect(sock, (self.host, self.port))
                    except BaseException:
                        sock.close()
                        raise
                    await loop.create_connection(lambda c=client: c, sock=sock)  # type: ignore[misc]
                    await asyncio.wait_for(subscribed, max(0.1, deadline - time.time()))
                    self.clients.append(client)
                    return True
                except (OSError, TimeoutError):
                    if client.transport is not None:
                        client.transport.abort()
                finally:
                    self._pending_subs.pop(client, None)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        self.failed += 1
        return False

    def opened(self, client: WsClient) -> None:
        since: dict[str, dict[str, Any]] = {}
        track = client.track
        if track.epoch is not None:
            since = {self.channel: {"epoch": track.epoch, "seq": track.contiguous()}}
        for room, (epoch, seq) in track.positions.items():
            since[room] = {"epoch": epoch, "seq": seq}
        channels = [self.channel, *track.rooms]
        track.waiting = set(channels)
        client.send({"type": "subscribe", "channels": channels, "since": since})

    async def storm(self, within: float) -> dict[str, Any]:
        """Drop every client at once, then reconnect them all, each resuming from its last seq."""
        started = time.time()
        for client in self.clients:
            if client.transport is not None:
                client.transport.abort()
        self.clients = []
        for track in self.tracks:
            track.resumed = None
        opened = await self._open_all(self.tracks, resume=True, within=within)
        resumed_at = max((t.subscribed_at for t in self.tracks), default=started)
        steps = array("d")  # per client: waited for a slot, TCP, upgrade, subscribe (seconds)
        for t in self.tracks:
            asked, tcp, upgraded, done = t.steps
            if done >= upgraded >= tcp >= asked > 0:
                steps.extend((asked - started, tcp - asked, upgraded - tcp, done - upgraded))
        return opened | {
            "resumed": sum(t.resumed is True for t in self.tracks),
            "snapshots": sum(t.resumed is False for t in self.tracks),
            "all_resumed_after": resumed_at - started,
            "steps": steps.tobytes(),
        }

    # ---- messages ---------------------------------------------------------------------------

    def message(self, client: WsClient, payload: bytes) -> None:
        track = client.track
        if payload.startswith(EVENT):
            # The hot path: read seq and the publish time without decoding the whole event.
            now = time.time()
            self.last_received = now
            at = payload.find(b'"seq":') + 6
            seq = int(payload[at : payload.find(b",", at)])
            i = seq - track.base - 1
            if 0 <= i < len(track.got):
                if track.got[i]:
                    track.duplicates += 1
                    return
                track.got[i] = 1
                track.received += 1
                if seq < track.highest:
                    track.reordered += 1
                track.highest = max(track.highest, seq)
                if (mark := payload.find(TEXT_MARK)) >= 0:
                    start = mark + len(TEXT_MARK)
                    sent = int(payload[start : payload.find(b" ", start)]) / 1e9
                    self.latencies.append((now - sent) * 1000)
                self.received += 1
                if self.received >= self.expected and self._done and not self._done.done():
                    self._done.set_result(None)
            return
        msg = orjson.loads(payload)
        if msg.get("type") != "subscribed":
            return
        channel = msg.get("channel")
        if channel == self.channel:
            track.epoch = msg.get("epoch", track.epoch)
            track.resumed = msg.get("resumed")
        elif isinstance(channel, str) and channel in track.rooms and "epoch" in msg:
            track.positions[channel] = (msg["epoch"], msg["seq"])
        track.waiting.discard(channel)
        if not track.waiting:  # every channel of the client is live: it is back
            track.subscribed_at = track.steps[3] = time.time()
            if (waiting := self._pending_subs.get(client)) is not None and not waiting.done():
                waiting.set_result(None)

    def expect(self, base: int, count: int) -> None:
        for track in self.tracks:
            track.expect(base, count)
        self.latencies = array("d")
        self.expected = count * len(self.tracks)
        self.received = 0
        self.last_received = 0.0
        self._done = asyncio.get_running_loop().create_future()
        if self.expected == 0:
            self._done.set_result(None)

    async def wait(self, within: float) -> dict[str, Any]:
        """Wait until every client has every message, or `timeout`; then count what arrived."""
        assert self._done is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._done), within)
        closes: dict[str, int] = {}
        for track in self.tracks:
            for code, count in track.closes.items():
                closes[str(code)] = closes.get(str(code), 0) + count
        return {
            "expected": self.expected,
            "received": self.received,
            "lost": self.expected - self.received,
            "duplicates": sum(t.duplicates for t in self.tracks),
            "reordered": sum(t.reordered for t in self.tracks),
            "last_received": self.last_received,
            "latencies": self.latencies.tobytes(),
            "closes": closes,
        }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(  # noqa: PLR0917 - multiprocessing passes the arguments by position
    conn: Connection,
    url: str,
    channel: str,
    rooms: tuple[str, ...],
    sources: tuple[str, ...],
    connects_at_once: int = 0,
) -> None:
    """The body of a load generator process: obey the bench's commands until told to stop.

    Commands are tuples: ("connect", count, timeout), ("expect", base, count),
    ("wait", timeout), ("storm", timeout), ("stop",). Each gets one reply, a dict, which also
    carries the process's CPU seconds so far."""
    asyncio.run(_serve(conn, Generator(url, channel, rooms, sources, connects_at_once)))


async def _serve(conn: Connection, gen: Generator) -> None:
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        name, args = command[0], command[1:]
        reply: dict[str, Any]
        if name == "connect":
            reply = await gen.connect(*args)
        elif name == "expect":
            gen.expect(*args)
            reply = {}
        elif name == "wait":
            reply = await gen.wait(*args)
        elif name == "storm":
            reply = await gen.storm(*args)
        else:
            for client in gen.clients:
                if client.transport is not None:
                    client.transport.abort()
            conn.send({"cpu": cpu_seconds()})
            return
        conn.send(reply | {"cpu": cpu_seconds()})
