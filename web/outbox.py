"""The write path: each message framed once for every receiver, one write per client per turn.

The hub hands every subscriber of an event the same bytes; the `Outbox` frames them as a
websocket text frame once, and each client only appends the frame to its list of pending output.
Once per turn of the event loop, after everything that arrived in that turn has been handed out,
the outbox writes each client's pending frames to its socket in one write (a burst of events
becomes one write per client, not one per event). With many clients, when writing to all of them
took a while, the next flush waits as long (at most MAX_GATHER) so that each write carries more,
and a flush writes a SLICE of clients at a time, letting the loop hand out what arrives meanwhile
to the clients it has not reached yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from web.latency import Histogram

log = logging.getLogger(__name__)

FRAMED_CACHE = 256  # recent frames kept framed, for the next subscribers of the same event
# A write costs a system call per client whatever it carries (on loopback, about 7 us: most of a
# delivery's cost at 20 messages per second). When the last flush took long, the next one waits
# as long, up to MAX_GATHER, gathering what arrives meanwhile into the same writes. Below
# MIN_GATHER (a few hundred clients) the next flush comes at the end of the turn, as it always
# did. At 20,000 clients and 20 messages per second a longer wait (100 ms) saved CPU but cost
# more latency than it saved (docs/performance.md).
MIN_GATHER = 0.002
MAX_GATHER = 0.02
# A flush writes to this many clients, then lets the loop take what arrived meanwhile: a message
# that comes in the middle of a flush still reaches, in that flush, the clients it has not written
# to yet. So each client is written to once per cycle, at about the same point of it, and waits
# at most one cycle for a message, not the rest of a flush, a gathering and a flush again.
SLICE = 256


class Writer(Protocol):
    """What the outbox writes to (web.client.Client)."""

    @property
    def id(self) -> int: ...

    def flush(self) -> None: ...

    def abort(self) -> None: ...


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked websocket text frame (RFC 6455 5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class Outbox:
    """Framing once per message and one write per client per turn of the event loop (or per
    gathering, when the clients are many: see MAX_GATHER)."""

    def __init__(self) -> None:
        # The hub gives every subscriber of an event the very same bytes object: remember its
        # frame by identity. Keeping the payload in the entry keeps its id from being reused.
        self._framed: dict[int, tuple[bytes, bytes]] = {}
        self._dirty: list[Writer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._since = 0.0  # when the first frame of the flush under way was handed out
        self._first = 0.0  # when the first frame of the next flush was
        self._took = 0.0  # how long the last flush spent writing
        self._writing: list[Writer] | None = None  # the clients of the flush under way
        self._at = 0  # how far that flush has come
        self._began = 0.0
        self.writes = 0
        self.slow_closes = 0
        self.fanout = Histogram()

    def frame(self, payload: bytes) -> bytes:
        hit = self._framed.get(id(payload))
        if hit is not None and hit[0] is payload:
            return hit[1]
        framed = text_frame(payload)
        if len(self._framed) >= FRAMED_CACHE:
            self._framed.clear()
        self._framed[id(payload)] = (payload, framed)
        return framed

    def pending(self, client: Writer) -> None:
        """`client` has output: write it at the end of this turn of the loop (or of the flush
        under way, or after a gathering)."""
        if not self._dirty:
            self._first = time.perf_counter()
            if self._writing is None:
                self._schedule()
        self._dirty.append(client)

    def _schedule(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        delay = min(self._took, MAX_GATHER)
        if delay < MIN_GATHER:
            self._loop.call_soon(self.flush)
        else:
            self._loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """Begin writing to every client with output, a SLICE at a time."""
        if self._writing is not None:
            return  # under way: what came meanwhile waits for the next one
        self._writing, self._dirty = self._dirty, []
        self._since, self._at = self._first, 0
        self._began = time.perf_counter()
        self._write()

    def _write(self) -> None:
        writing = self._writing
        assert writing is not None and self._loop is not None
        start = self._at
        end = self._at = min(start + SLICE, len(writing))
        for i in range(start, end):
            client = writing[i]
            try:
                client.flush()
            except Exception:
                # One client's failure must not keep the others from their writes.
                log.exception(
                    "writing to client %d failed; dropping it", client.id, extra={"conn": client.id}
                )
                client.abort()
        if end < len(writing):
            self._loop.call_soon(self._write)
            return
        self.writes += len(writing)
        self._writing = None
        done = time.perf_counter()
        self._took = done - self._began
        self.fanout.observe(done - self._since)
        if self._dirty:
            self._schedule()
