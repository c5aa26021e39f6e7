"""The benchmark's load generator: thousands of websocket clients in one process.

Each client is a non-blocking socket on the process's own epoll loop that speaks just enough
RFC 6455 (the opening handshake, masked frames out, unmasked frames in, ping, close), so that one
process can hold thousands of them while using little CPU per message: the server, not the load
generator, should be what a benchmark measures. Every client checks what it receives: each
message's seq is recorded, so messages lost, duplicated or out of order are counted, and each
message's delay since it was published (the publisher writes its clock into the text) is kept.

A process is driven over a pipe by `feed bench` (web.bench): see `serve`.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import heapq
import os
import resource
import select
import socket
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

import orjson

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MARK = "bench "  # the text of a benchmark announcement starts with this, then the publish time
TEXT_MARK = b'"text":"' + MARK.encode()
EVENT = b'{"type":"event",'  # how the server's events start (feed.protocol.Event.frame)
EVENTS_KEPT = 4096  # events remembered by their bytes, per process


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


class WsClient:
    """One client: a non-blocking socket, what it has read of a frame, what it has yet to write."""

    __slots__ = ("buf", "gen", "open", "out", "sock", "tcp", "track")

    def __init__(self, gen: Generator, track: Track, sock: socket.socket) -> None:
        self.gen = gen
        self.track = track
        self.sock = sock
        self.buf = b""  # the start of a frame whose end has not arrived yet
        self.out = b""  # what the socket did not take yet
        self.tcp = False  # connected
        self.open = False  # upgraded

    def write(self, data: bytes) -> None:
        if self.out:
            self.out += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.gen.drop(self)
            return
        if sent < len(data):
            self.out = data[sent:]
            self.gen.watch(self, select.EPOLLIN | select.EPOLLOUT)

    def writable(self) -> None:
        if not self.tcp:
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.gen.drop(self)
                return
            self.tcp = True
            self.track.steps[1] = time.time()
            self.gen.watch(self, select.EPOLLIN)
            self.write(self.gen.handshake)
            return
        out, self.out = self.out, b""
        self.gen.watch(self, select.EPOLLIN)
        self.write(out)

    def readable(self) -> None:
        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.gen.drop(self)
            return
        if self.buf:
            data, self.buf = self.buf + data, b""
        if not self.open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            head, data = data[:end], data[end + 4 :]
            if b" 101 " not in head.split(b"\r\n", 1)[0] or self.gen.accept not in head:
                self.gen.drop(self)
                return
            self.open = True
            self.track.steps[2] = time.time()
            self.gen.opened(self)
        rest = self.gen.frames(self, data, 0)
        if rest < len(data) and self.sock.fileno() >= 0:
            self.buf = data[rest:]

    def control(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:
            self.write(client_frame(payload, 0xA))  # pong
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.track.closes[code] = self.track.closes.get(code, 0) + 1
            self.gen.drop(self)

    def send(self, message: dict[str, Any]) -> None:
        self.write(client_frame(orjson.dumps(message)))


class Generator:
    """The clients of one process, on one epoll loop of their own, and the counters the bench
    reads back.

    No asyncio here: after a wifi blip or during a burst a load generator does little but read
    sockets, and asyncio's layers (selector, handles, transports, protocols) cost more per read
    than the read itself. Each method that waits (`connect`, `storm`, `wait`) turns the loop until
    what it waits for has happened or its time is up."""

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
        self.clients: list[WsClient] = []  # the subscribed ones
        self.tracks: list[Track] = []
        self.latencies = array("d")  # milliseconds, one per message received
        self.last_received = 0.0
        self.expected = 0  # messages this process's clients should receive in the scenario
        self.received = 0
        self.failed = 0  # connections refused or handshakes that failed
        self.lost = 0  # connections lost
        self._events: dict[bytes, tuple[int, float]] = {}
        self._epoll = select.epoll()
        self._by_fd: dict[int, WsClient] = {}
        self._opening: dict[WsClient, float] = {}  # clients not yet subscribed: their deadline
        self._queue: deque[Track] = deque()  # tracks waiting for a connection slot
        self._retries: list[tuple[float, int, Track]] = []  # (when, tiebreak, track): a heap
        self._delays: dict[int, float] = {}  # id(track): its next retry's back-off
        self._deadline = 0.0  # when the opening under way gives up
        self._waiting_opens = 0  # tracks of the opening under way not yet subscribed or failed
        self._opened_ok = 0

    # ---- the loop ---------------------------------------------------------------------------

    def watch(self, client: WsClient, events: int) -> None:
        self._epoll.modify(client.sock.fileno(), events)

    def turn(self, timeout: float) -> None:
        """Wait for sockets at most `timeout` seconds, then serve every one that is ready."""
        by_fd = self._by_fd
        for fd, events in self._epoll.poll(max(0.0, timeout), 4096):
            client = by_fd.get(fd)
            if client is None:
                continue
            if events & select.EPOLLOUT:
                client.writable()
            if events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP) and fd in by_fd:
                client.readable()
        now = time.time()
        while self._retries and self._retries[0][0] <= now:
            self._queue.append(heapq.heappop(self._retries)[2])
        self._next_in_queue()
        if self._opening and now >= self._deadline:
            for client in list(self._opening):
                self.drop(client)

    def run_until(self, done: Callable[[], bool], deadline: float) -> None:
        while not done() and (now := time.time()) < deadline:
            until = deadline
            if self._retries:
                until = min(until, self._retries[0][0])
            self.turn(min(until - now, 0.5))

    # ---- connections ------------------------------------------------------------------------

    def connect(self, count: int, within: float) -> dict[str, Any]:
        """Open `count` more clients, each subscribed to the channel."""
        first = len(self.tracks)
        tracks = [Track(rooms=self._rooms_for(first + i)) for i in range(count)]
        self.tracks.extend(tracks)
        return self._open_all(tracks, within=within)

    def _rooms_for(self, i: int) -> tuple[str, ...]:
        if not self.rooms:
            return ()
        one = self.rooms[i % len(self.rooms)]
        if i % 2 or len(self.rooms) < 2:
            return (one,)
        return (one, self.rooms[(i + 1) % len(self.rooms)])

    def _open_all(self, tracks: list[Track], *, within: float) -> dict[str, Any]:
        started = time.time()
        self._deadline = started + within
        self._waiting_opens = len(tracks)
        self._opened_ok = 0
        self._delays.clear()
        self._queue.extend(tracks)
        self._next_in_queue()
        self.run_until(lambda: self._waiting_opens == 0, self._deadline + 1)
        self._queue.clear()
        self._retries.clear()
        return {
            "clients": self._opened_ok,
            "failed": len(tracks) - self._opened_ok,
            "seconds": time.time() - started,
        }

    def _start(self, track: Track) -> None:
        """One attempt at connecting `track`'s client."""
        if time.time() >= self._deadline:
            self._gave_up()
            return
        source = self.sources[self._next_source % len(self.sources)]
        self._next_source += 1
        track.steps[0] = time.time()
        try:
            sock = _socket_from(source)
        except OSError:
            self._retry(track)
            return
        client = WsClient(self, track, sock)
        err = sock.connect_ex((self.host, self.port))
        if err not in {0, errno.EINPROGRESS}:
            sock.close()
            self._retry(track)
            return
        self._by_fd[sock.fileno()] = client
        self._opening[client] = self._deadline
        self._epoll.register(sock.fileno(), select.EPOLLOUT)

    def _retry(self, track: Track) -> None:
        delay = self._delays.get(id(track), 0.05)
        self._delays[id(track)] = min(delay * 2, 1.0)
        if time.time() + delay >= self._deadline:
            self._gave_up()
            return
        heapq.heappush(self._retries, (time.time() + delay, id(track), track))

    def _gave_up(self) -> None:
        self.failed += 1
        self._waiting_opens -= 1

    def _next_in_queue(self) -> None:
        """Start the waiting tracks, as many as `connects_at_once` lets."""
        while self._queue and (
            not self.connects_at_once or len(self._opening) < self.connects_at_once
        ):
            self._start(self._queue.popleft())

    def drop(self, client: WsClient) -> None:
        """Close `client`'s socket; one still opening tries again."""
        fd = client.sock.fileno()
        if fd >= 0:
            self._by_fd.pop(fd, None)
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
            client.sock.close()
            if client.tcp:
                self.lost += 1
        client.open = False
        if self._opening.pop(client, None) is not None:
            self._retry(client.track)
            self._next_in_queue()

    def close_all(self) -> None:
        for client in list(self._by_fd.values()):
            self.drop(client)
        self.clients = []

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

    def _subscribed(self, client: WsClient) -> None:
        if self._opening.pop(client, None) is None:
            return
        self.clients.append(client)
        self._opened_ok += 1
        self._waiting_opens -= 1
        self._next_in_queue()

    def storm(self, within: float) -> dict[str, Any]:
        """Drop every client at once, then reconnect them all, each resuming from its last seq."""
        started = time.time()
        self.close_all()
        for track in self.tracks:
            track.resumed = None
        opened = self._open_all(self.tracks, within=within)
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

    def frames(self, client: WsClient, data: bytes, pos: int) -> int:
        """Take the whole frames in `data` from `pos` on; return where the first partial one starts.

        Every client receives the very same bytes for an event (the server frames it once), so an
        event's seq and publish time are read once per process (`_events`), and each client's
        check is a dictionary look-up and a few integer operations."""
        size = len(data)
        track = client.track
        events = self._events
        now = time.time()
        while size - pos >= 2:
            b0, n = data[pos], data[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n, start = (data[pos + 2] << 8) | data[pos + 3], pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, start = int.from_bytes(data[pos + 2 : pos + 10], "big"), pos + 10
            end = start + n
            if end > size:
                break
            pos = end
            if b0 != 0x81:
                client.control(b0 & 0x0F, data[start:end])
                if b0 & 0x0F == 0x8:
                    return size
                continue
            payload = data[start:end]
            known = events.get(payload)
            if known is None:
                known = self._event(payload)
                if known is None:
                    self.message(client, payload)
                    continue
            seq, sent = known
            i = seq - track.base - 1
            got = track.got
            if not 0 <= i < len(got):
                continue
            if got[i]:
                track.duplicates += 1
                continue
            got[i] = 1
            track.received += 1
            if seq < track.highest:
                track.reordered += 1
            else:
                track.highest = seq
            if sent:
                self.latencies.append((now - sent) * 1000)
            self.last_received = now
            self.received += 1
        return pos

    def _event(self, payload: bytes) -> tuple[int, float] | None:
        """An event's seq and publish time (0.0 if its text has none), remembered by its bytes."""
        if not payload.startswith(EVENT):
            return None
        at = payload.find(b'"seq":') + 6
        seq = int(payload[at : payload.find(b",", at)])
        sent = 0.0
        if (mark := payload.find(TEXT_MARK)) >= 0:
            start = mark + len(TEXT_MARK)
            sent = int(payload[start : payload.find(b" ", start)]) / 1e9
        if len(self._events) >= EVENTS_KEPT:
            self._events.clear()
        self._events[payload] = (seq, sent)
        return seq, sent

    def message(self, client: WsClient, payload: bytes) -> None:
        """A message other than an event: what a subscription's confirmation says."""
        track = client.track
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
            self._subscribed(client)

    def expect(self, base: int, count: int) -> None:
        for track in self.tracks:
            track.expect(base, count)
        self.latencies = array("d")
        self.expected = count * len(self.tracks)
        self.received = 0
        self.last_received = 0.0

    def wait(self, within: float) -> dict[str, Any]:
        """Wait until every client has every message, or `timeout`; then count what arrived."""
        self.run_until(lambda: self.received >= self.expected, time.time() + within)
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
    gen = Generator(url, channel, rooms, sources, connects_at_once)
    try:
        while True:
            while not conn.poll(0):  # between commands, the clients go on reading
                gen.turn(0.05)
            command = conn.recv()
            name, args = command[0], command[1:]
            reply: dict[str, Any]
            if name == "connect":
                reply = gen.connect(*args)
            elif name == "expect":
                gen.expect(*args)
                reply = {}
            elif name == "wait":
                reply = gen.wait(*args)
            elif name == "storm":
                reply = gen.storm(*args)
            else:
                gen.close_all()
                conn.send({"cpu": cpu_seconds()})
                return
            conn.send(reply | {"cpu": cpu_seconds()})
    finally:
        gen.close_all()
