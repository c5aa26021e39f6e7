"""The write path: each message framed once for every receiver, one write per client per turn.

The hub hands every subscriber of an event the same bytes; the `Outbox` frames them as a
websocket text frame once, and each client only appends the frame to its list of pending output.
Once per turn of the event loop, after everything that arrived in that turn has been handed out,
the outbox writes each client's pending frames to its socket in one write (a burst of events
becomes one write per client, not one per event). With many clients, when writing to all of them
took a while, the next flush waits as long (at most MAX_GATHER) so that each write carries more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from web.latency import Histogram

log = logging.getLogger(__name__)

FRAMED_CACHE = 256  # recent frames kept framed, for the next subscribers of the same event
# A write costs a system call per client whatever it carries (on loopback, about 6 us: most of a
# delivery's cost at 20 messages per second). When the last flush took long, the next one waits
# as long, up to MAX_GATHER, gathering what arrives meanwhile into the same writes: the outbox
# then spends at most about half of its time writing. Below MIN_GATHER (a few hundred clients)
# the next flush comes at the end of the turn, as it always did.
MIN_GATHER = 0.002
MAX_GATHER = 0.1


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
        self._since = 0.0  # when the first frame of this turn was handed out
        self._took = 0.0  # how long the last flush spent writing
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
        """`client` has output: write it at the end of this turn of the loop."""
        if not self._dirty:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            delay = min(self._took, MAX_GATHER)
            if delay < MIN_GATHER:
                self._loop.call_soon(self.flush)
            else:
                self._loop.call_later(delay, self.flush)
            self._since = time.perf_counter()
        self._dirty.append(client)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        began = time.perf_counter()
        for client in dirty:
            try:
                client.flush()
            except Exception:
                # One client's failure must not keep the others from their writes.
                log.exception(
                    "writing to client %d failed; dropping it", client.id, extra={"conn": client.id}
                )
                client.abort()
        self.writes += len(dirty)
        done = time.perf_counter()
        self._took = done - began
        self.fanout.observe(done - self._since)
