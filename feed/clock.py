"""The server's clock: real time, or the accelerated time of the demo.

One object answers "what time is it" for everything that shows time to people (snapshots' now
and next, `server_time` in hello and pong, announcement times and expiry), so the demo can run a
past conference's program as if it were happening now, faster.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import orjson


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

    def to_json(self) -> bytes:
        """What other processes need to run the same clock (the demo shares it through Redis)."""
        return orjson.dumps(
            {"start": self.start, "rate": self.rate, "period": self.period, "origin": self.origin}
        )

    @classmethod
    def from_json(cls, raw: bytes | None) -> Clock | None:
        """The clock `to_json` described, or None for anything that is not one."""
        try:
            data: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        start, rate, period, origin = (data.get(k) for k in ("start", "rate", "period", "origin"))
        numbers = [v for v in (start, rate, period, origin) if v is not None]
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in numbers):
            return None
        if start is None or origin is None or not isinstance(rate, int | float) or rate <= 0:
            return None
        if period is not None and period <= 0:
            return None
        return cls(start=float(start), rate=float(rate), period=period, origin=float(origin))


REAL = Clock()
