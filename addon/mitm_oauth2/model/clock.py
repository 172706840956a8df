"""Time, injectable so tests never sleep."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def wall(self) -> float:
        """Epoch seconds: only for what is persisted or shared between processes."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: for every decision inside one process."""
        ...


class SystemClock:
    # The functions themselves, not methods that call them: every request reads the clock.
    wall = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)
