"""Scaled time for the simulator: every Asterisk duration is multiplied by `time_scale`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimClock:
    """Sleeps and measures in simulated seconds; `time_scale=0.1` runs ten times faster."""

    time_scale: float = 1.0

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of simulated time."""
        await asyncio.sleep(max(0.0, seconds) * self.time_scale)

    def real(self, seconds: float) -> float:
        """Convert simulated seconds to wall-clock seconds."""
        return max(0.0, seconds) * self.time_scale

    def now(self) -> float:
        """Simulated monotonic time in seconds."""
        scale = self.time_scale if self.time_scale > 0 else 1.0
        return time.monotonic() / scale

    @staticmethod
    def epoch() -> int:
        """Wall-clock epoch seconds (Uniqueids use the real date, like Asterisk)."""
        return int(time.time())
