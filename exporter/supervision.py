"""The exporter's long-running loops survive their own bugs, and /-/healthy tells the truth.

Every loop (the renderer thread, one poll task per listed function and per discovered
project, change-driven logs requests, the login session's renewal, the event loop's heartbeat)
reports an unexpected exception here: it is logged with its traceback, counted in
`mudbase_exporter_loop_errors_total{loop}`, and the loop goes on.

`Health` answers /-/healthy: unhealthy (503, with the reason) when the event loop has not
ticked for `LOOP_STALL_LIMIT` seconds, or when the state changed and /metrics has not shown it
for `RENDER_STALE_LIMIT` seconds.
"""

import asyncio
import time
from collections.abc import Callable
from enum import StrEnum

from prometheus_client import Counter

from exporter.logs import get_logger

log = get_logger("exporter.supervision")

HEARTBEAT = 1.0  # seconds between the event loop's ticks
LOOP_STALL_LIMIT = 30.0
RENDER_STALE_LIMIT = 60.0


class Loop(StrEnum):
    RENDER = "render"
    POLL = "poll"
    LIST = "list"
    LOGS = "logs"
    AUTH = "auth"
    HEARTBEAT = "heartbeat"


class LoopErrors:
    """Where a loop reports an exception it did not expect."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        for loop in Loop:  # every loop at 0 from the start, so increase() sees the first
            counter.labels(loop.value)

    def caught(self, loop: Loop, error: BaseException, **context: object) -> None:
        """Log `error` with its traceback and count it; the caller's loop goes on."""
        self._counter.labels(loop.value).inc()
        log.error(
            "unexpected error; the loop goes on",
            loop=loop.value,
            error=repr(error),
            exc_info=error,
            **context,
        )


class Health:
    """The answer of /-/healthy, from the event loop's heartbeat and the renderer's lag."""

    def __init__(
        self,
        unrendered_for: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        loop_stall_limit: float = LOOP_STALL_LIMIT,
        render_stale_limit: float = RENDER_STALE_LIMIT,
    ) -> None:
        self._unrendered_for = unrendered_for
        self._clock = clock
        self._last_tick: float | None = None
        self._loop_stall_limit = loop_stall_limit
        self._render_stale_limit = render_stale_limit

    async def beat(self, errors: LoopErrors) -> None:
        """Tick forever on the event loop (run as a task)."""
        while True:
            try:
                self.tick()
            except Exception as err:  # the heartbeat never stops
                errors.caught(Loop.HEARTBEAT, err)
            await asyncio.sleep(HEARTBEAT)

    def tick(self) -> None:
        self._last_tick = self._clock()

    def problems(self) -> list[str]:
        """What is wrong, one sentence each; empty when healthy."""
        found = []
        if self._last_tick is not None:
            stalled = self._clock() - self._last_tick
            if stalled > self._loop_stall_limit:
                found.append(f"the event loop has not ticked for {stalled:.0f} s")
        unrendered = self._unrendered_for()
        if unrendered > self._render_stale_limit:
            found.append(f"/metrics has not shown the state's changes for {unrendered:.0f} s")
        return found
