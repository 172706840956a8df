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
    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
