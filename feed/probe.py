"""Whether a pub/sub subscription still delivers, told by probes that must come back through it.

An open TCP connection proves little: a stalled network, or a proxy that lost the subscription,
keeps it open while nothing arrives. So every few seconds the listener publishes a probe, from
another connection, to a channel only its subscription listens to; if the probe does not come back
in time, the subscription is taken for dead and made again. Anything that comes through in the
meantime proves it alive just as well (the probe waits behind it). Pure: the caller gives the
time and does the I/O (feed.bus.Bus.listen).
"""

from __future__ import annotations

from dataclasses import dataclass

PROBE_EVERY = 5.0  # seconds between probes...
PROBE_TIMEOUT = 3.0  # ...each of which must come back through the subscription within this


@dataclass(slots=True)
class Probe:
    next_at: float  # when the next probe is due
    every: float = PROBE_EVERY
    timeout: float = PROBE_TIMEOUT
    number: int = 0  # of the last probe sent
    sent: float | None = None  # when the probe in flight went out (or was last vouched for)

    @classmethod
    def starting(
        cls, now: float, every: float = PROBE_EVERY, timeout: float = PROBE_TIMEOUT
    ) -> Probe:
        return cls(next_at=now + every, every=every, timeout=timeout)

    def heard(self, now: float) -> None:
        """Something came through the subscription: the probe in flight may wait behind it."""
        if self.sent is not None:
            self.sent = now

    def back(self, data: str) -> None:
        """A probe came back: if it is the one in flight, the subscription works."""
        if data == str(self.number):
            self.sent = None

    def dead(self, now: float) -> bool:
        """Whether the probe in flight is overdue: the subscription delivers nothing."""
        return self.sent is not None and now - self.sent > self.timeout

    def due(self, now: float) -> str | None:
        """The next probe's payload when one is due (and none is in flight), else None."""
        if self.sent is not None or now < self.next_at:
            return None
        self.number += 1
        self.sent, self.next_at = now, now + self.every
        return str(self.number)
