"""Work started and not awaited (closing connections, purges, opening a store): the event loop
holds tasks only weakly, so each is kept here until it is done."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any
from typing import TypeVar

T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()


def in_background(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Runs `work` on the running loop without awaiting it."""
    task = asyncio.ensure_future(work)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task
