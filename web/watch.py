"""`feed watch`: a terminal client on the `websockets` library (independent of the server's stack).

It prints each snapshot and event as it arrives, and after a disconnect reconnects with backoff and
resumes from its last (epoch, seq) per channel, so the output has no silent gap: a resume that the
server cannot serve exactly shows up as a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
import urllib.request
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import orjson
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from feed.errors import RECONNECT, CloseCode
from feed.models import in_language
from feed.protocol import MAX_CHANNELS_PER_CONNECTION

MAX_BACKOFF = 10.0
# The language of multilingual announcements: the terminal's (LANG=fr_FR.UTF-8 gives "fr").
READER_LANGUAGE = (os.environ.get("LANG") or "en").split("_")[0].split(".")[0].lower() or "en"
DISCOVER_EVERY = 3.0  # seconds between looks for new channels when watching all


def ws_url(url: str) -> str:
    parts = urlsplit(url if "://" in url else "http://" + url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    return urlunsplit(
        (scheme, parts.netloc, path if path.endswith("/ws") else path + "/ws", "", "")
    )


Offsets = list[list[int]]


def _clock(ts_ms: int | None = None, offsets: Offsets | None = None) -> str:
    """A time as the venue's clock reads it, with the offsets the server sent in its hello (the
    server is the authority on venue time); before any hello, in this machine's zone."""
    seconds = ts_ms / 1000 if ts_ms else time.time()
    if not offsets:
        return time.strftime("%H:%M:%S", time.localtime(seconds))
    minutes = offsets[0][1]
    for start, offset in offsets:
        if start > seconds * 1000:
            break
        minutes = offset
    return time.strftime("%H:%M:%S", time.gmtime(seconds + minutes * 60))


def _valid_offsets(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(o, list)
            and len(o) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in o)
            for o in value
        )
    )


def describe(msg: dict[str, Any], offsets: Offsets | None = None) -> str | None:
    """One line for a server message, or None for messages not worth a line."""
    kind = msg.get("type")
    ch = str(msg.get("channel", ""))
    if kind == "snapshot":
        state = msg.get("state") or {}
        now = _clock(None, offsets)
        parts = [f"{now}  {ch:<16} snapshot #{msg.get('seq')} (epoch {msg.get('epoch')})"]
        if "status" in state:
            parts.append(_shown(state))
        for label in ("now", "next"):
            if isinstance(state.get(label), dict):
                parts.append(f"\n{'':26}{label}: {_session(state[label])}")
        for a in state.get("announcements", []):
            parts.append(f"\n{'':26}{_announcement(a)}")
        return "  ".join(parts[:2]) + "".join(parts[2:])
    if kind == "event":
        data = msg.get("data") or {}
        head = f"{_clock(msg.get('ts'), offsets)}  {ch:<16} #{msg.get('seq')} {msg.get('kind')}"
        if msg.get("kind") == "status":
            return f"{head}  {_status(data)}"
        if msg.get("kind") == "announce":
            return f"{head}  {_announcement(data)}"
        if msg.get("kind") == "retract":
            why = "expired" if data.get("reason") == "expired" else "withdrawn"
            return f"{head}  announcement {data.get('id')} {why}"
        if msg.get("kind") == "program":
            sessions, changes = data.get("sessions") or [], data.get("changes") or []
            return f"{head}  {len(sessions)} sessions in the program, {len(changes)} changed"
        if msg.get("kind") == "schedule":
            total = data.get("changes_total", 0)
            return f"{head}  new program version {data.get('etag')}: {total} changes"
        return f"{head}  {orjson.dumps(data).decode()}"
    if kind == "subscribed" and msg.get("resumed"):
        return f"{_clock(None, offsets)}  {ch:<16} resumed, up to date at #{msg.get('seq')}"
    if kind == "health":
        what = "live again" if msg.get("live") else "lost Redis: updates paused"
        return f"{_clock(None, offsets)}  server {what}"
    return None


def _session(s: dict[str, Any]) -> str:
    titles = s.get("titles")
    title = in_language(titles, READER_LANGUAGE) if titles else s.get("title")
    return f"{str(s.get('start', ''))[11:16]}-{str(s.get('end', ''))[11:16]}  {title}"


def _shown(state: dict[str, Any]) -> str:
    """What the room's screens show (the snapshot's `shown`, docs/protocol.md "What a room
    shows"): the operator's status while it holds, else what the program says."""
    shown = state.get("shown")
    if not isinstance(shown, dict) or shown.get("source") != "program":
        return _status(state)
    said = {"on": "on now", "next": "next", "over": "over for today", "none": "no sessions"}
    text = f"program: {said.get(str(shown.get('status')), shown.get('status'))}"
    if shown.get("session"):
        text += f" (session {shown['session']})"
    if state.get("status"):
        text += f"; the operator's {state['status']!s} no longer holds"
    return text


def _status(s: dict[str, Any]) -> str:
    text = str(s.get("status") or "no status yet")
    if s.get("delay"):
        text += f" +{s['delay']} min"
    if s.get("moved_to"):
        text += f" -> room {s['moved_to']}"
    if s.get("session"):
        text += f" (session {s['session']})"
    return text


def _announcement(a: dict[str, Any]) -> str:
    where = ", ".join(a.get("rooms") or []) or "everyone"
    text = a.get("text")
    if isinstance(text, dict) and text:
        text = in_language({str(k): str(v) for k, v in text.items()}, READER_LANGUAGE)
    return f"[{a.get('priority')}] {text}  (to {where}; id {a.get('id')})"


class Watcher:
    def __init__(
        self, url: str, channels: list[str], *, raw: bool = False, out: TextIO = sys.stdout
    ):
        self.url = ws_url(url)
        self.channels = channels
        self.raw = raw
        self.out = out
        self.positions: dict[str, dict[str, Any]] = {}
        self.resync: set[str] = set()  # channels to subscribe again after an unexpected seq
        self.offsets: Offsets | None = None  # venue time, from the server's hello

    def _now(self) -> str:
        return _clock(None, self.offsets)

    def _print(self, line: str, *, err: bool = False) -> None:
        print(line, file=sys.stderr if err else self.out, flush=True)

    async def _all_channels(self) -> list[str]:
        """Every channel the server knows, for a watch started without naming any."""
        url = self.url.replace("ws", "http", 1).removesuffix("/ws") + "/api/channels"

        def fetch() -> list[str]:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return list(orjson.loads(answer.read())["channels"])

        names = await asyncio.to_thread(fetch)
        names = names if "venue" in names else ["venue", *names]
        if len(names) > MAX_CHANNELS_PER_CONNECTION:
            self._print(
                f"{self._now()}  {len(names)} channels; watching the first"
                f" {MAX_CHANNELS_PER_CONNECTION} (name the ones you want instead)",
                err=True,
            )
        return names[:MAX_CHANNELS_PER_CONNECTION]

    async def _subscribe(self, conn: ClientConnection, channels: list[str]) -> None:
        since = {ch: self.positions[ch] for ch in channels if ch in self.positions}
        msg = {"type": "subscribe", "channels": channels, "since": since}
        await conn.send(orjson.dumps(msg).decode())

    async def _discover(self, conn: ClientConnection) -> None:
        """Watching everything: rooms that appear later are followed too."""
        while True:
            await asyncio.sleep(DISCOVER_EVERY)
            with contextlib.suppress(OSError, ValueError, KeyError):
                new = [ch for ch in await self._all_channels() if ch not in self.channels]
                if new:
                    self.channels += new
                    self._print(f"{self._now()}  now also watching {', '.join(new)}", err=True)
                    await self._subscribe(conn, new)

    async def run(self) -> int:
        backoff = 0.5
        follow_all = not self.channels
        while not self.channels:
            try:
                self.channels = await self._all_channels()
            except (OSError, ValueError, KeyError) as exc:
                self._print(f"{self._now()}  cannot list channels at {self.url}: {exc}", err=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        self._print(f"{self._now()}  watching {', '.join(self.channels)}", err=True)
        while True:
            try:
                async with websockets.connect(self.url, open_timeout=5, max_size=2**24) as conn:
                    backoff = 0.5
                    await self._subscribe(conn, self.channels)
                    discover = asyncio.create_task(self._discover(conn)) if follow_all else None
                    try:
                        async for raw in conn:
                            self._handle(orjson.loads(raw))
                            if self.resync:
                                await self._subscribe(conn, sorted(self.resync))
                                self.resync.clear()
                    finally:
                        if discover:
                            discover.cancel()
                    code = conn.close_code
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
            except (TimeoutError, OSError, InvalidHandshake) as exc:
                code = None
                self._print(f"{self._now()}  cannot connect to {self.url}: {exc}", err=True)
            except InvalidURI as exc:
                self._print(f"feed watch: {exc}", err=True)
                return 2
            if code is not None and code not in RECONNECT and code != CloseCode.NORMAL:
                self._print(
                    f"{self._now()}  the server closed the connection ({code}); stopping", err=True
                )
                return 1
            delay = min(backoff * (0.5 + random.random()), MAX_BACKOFF)
            self._print(f"{self._now()}  disconnected; resuming in {delay:.1f} s", err=True)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        venue = msg.get("venue") if kind == "hello" else None
        if isinstance(venue, dict) and _valid_offsets(venue.get("offsets")):
            self.offsets = venue["offsets"]
        ch = msg.get("channel")
        if kind in ("snapshot", "event") and isinstance(ch, str):
            last = self.positions.get(ch)
            seq = msg.get("seq")
            if (
                kind == "event"
                and last
                and (last["epoch"], last["seq"] + 1) != (msg.get("epoch"), seq)
            ):
                # Never expected from the server; if it happens, ask it to resume from what we have.
                self._print(
                    f"{self._now()}  {ch}: expected #{last['seq'] + 1}, got #{seq}", err=True
                )
                self.resync.add(ch)
                return
            self.positions[ch] = {"epoch": msg.get("epoch"), "seq": seq}
        if kind == "error":
            self._print(
                f"{self._now()}  server error {msg.get('code')}: {msg.get('message')}", err=True
            )
        elif self.raw:
            self._print(orjson.dumps(msg).decode())
        elif (line := describe(msg, self.offsets)) is not None:
            self._print(line)
