"""The server's clock: real time, or the accelerated time of the demo.

One object answers "what time is it" for everything that shows time to people (snapshots' now
and next, `server_time` in hello and pong, announcement times and expiry), so the demo can run a
past conference's program as if it were happening now, faster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Clock:
    start: float | None = None  # the virtual time at `origin`, in Unix seconds; None: real time
    rate: float = 1.0  # virtual seconds per real second
    period: float | None = None  # virtual seconds after which the virtual time starts over
    origin: float = field(default_factory=time.time)

    def __call__(self) -> float:
        """Now, in Unix seconds."""
        real = time.time()
        if self.start is None:
            return real
        elapsed = (real - self.origin) * self.rate
        return self.start + (elapsed % self.period if self.period else elapsed)

    def ms(self) -> int:
        return int(self() * 1000)


REAL = Clock()
