"""When to poll what: every function once per interval, spread evenly over the interval.

One asyncio task per function; a semaphore bounds how many polls run at once. The first round is
compressed into the first few seconds so that the exporter is ready quickly; after that function
i of n polls at phase i/n of every interval, so there is no thundering herd at each tick.
"""

import asyncio
import math
import time
from collections.abc import Callable, Mapping

from exporter.client import MudbaseClient
from exporter.errors import PollError, Reason
from exporter.logs import get_logger
from exporter.selfmetrics import ExporterMetrics
from exporter.state import StateStore
from exporter.targets import FunctionSettings, TargetKey
from exporter.upstream import FunctionStats

log = get_logger("exporter.poller")

FIRST_ROUND_SPREAD = 10.0  # seconds over which the first poll of every function is spread
POLL_DEADLINE_SHARE = 0.8  # one poll, retries included, is cut off at this share of the interval


def first_poll_delay(phase: float, interval: float) -> float:
    """The first round is compressed into the first seconds, so the exporter is ready soon."""
    return phase * min(interval, FIRST_ROUND_SPREAD)


def next_poll_time(start: float, phase: float, interval: float, now: float) -> float:
    """The next tick after `now` of a function at `phase` (0-1) of the interval.

    Ticks are start + (phase + k) * interval for k >= 1: evenly spread, never drifting, and a
    tick missed (a poll that ran long) is skipped rather than run late twice.
    """
    offset = start + phase * interval
    ticks_passed = math.floor((now - offset) / interval)
    return offset + max(1, ticks_passed + 1) * interval


class Poller:
    def __init__(
        self,
        client: MudbaseClient,
        state: StateStore,
        metrics: ExporterMetrics,
        *,
        interval: float,
        concurrency: int,
        keep_values_for: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._state = state
        self._metrics = metrics
        self._interval = interval
        self._semaphore = asyncio.Semaphore(concurrency)
        self._keep_values_for = keep_values_for
        self._clock = clock
        self._tasks: dict[TargetKey, asyncio.Task[None]] = {}

    def apply(self, targets: Mapping[TargetKey, FunctionSettings]) -> None:
        """Poll exactly these functions: start the new ones, stop the removed ones."""
        wanted = sorted(targets)
        self._state.set_targets(targets)
        for key in set(self._tasks) - set(wanted):
            self._tasks.pop(key).cancel()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, key in enumerate(wanted):
            if key not in self._tasks:
                phase = index / len(wanted)
                self._tasks[key] = asyncio.create_task(self._run(key, start, phase), name=str(key))
        self._metrics.targets.set(len(wanted))
        self._metrics.poll_interval.set(self._interval)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, key: TargetKey, start: float, phase: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(first_poll_delay(phase, self._interval))
        await self.poll_once(key)
        while True:
            due = next_poll_time(start, phase, self._interval, loop.time())
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self.poll_once(key)

    async def poll_once(self, key: TargetKey) -> None:
        async with self._semaphore:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self._interval * POLL_DEADLINE_SHARE):
                    stats = await self._client.function_stats(key.project, key.function)
            except PollError as err:
                self._failed(key, err.reason, err.detail)
            except TimeoutError:
                self._failed(key, Reason.TIMEOUT, "poll deadline exceeded, retries included")
            except Exception as err:  # a bug must not stop the other functions
                log.exception("unexpected error while polling", target=str(key))
                self._failed(key, Reason.INTERNAL, type(err).__name__)
            else:
                self._succeeded(key, stats)
            finally:
                self._metrics.poll_duration.observe(time.monotonic() - started)

    def _succeeded(self, key: TargetKey, stats: FunctionStats) -> None:
        previous = self._state.snapshot().get(key)
        self._state.record_success(key, stats, self._clock())
        if previous is not None and previous.up is False:
            log.info("poll recovered", target=str(key), failures=previous.consecutive_failures)
        else:
            log.debug("poll succeeded", target=str(key))

    def _failed(self, key: TargetKey, reason: Reason, detail: str) -> None:
        self._metrics.poll_errors.labels(reason.value).inc()
        previous = self._state.record_failure(
            key,
            reason.value,
            self._clock(),
            keep_values_for=self._keep_values_for,
            drop_values=reason is Reason.NOT_FOUND,
        )
        first_failure = previous is None or previous.up is not False
        if first_failure:
            log.warning("poll failed", target=str(key), reason=reason.value, detail=detail)
        elif previous is not None and previous.last_error_reason != reason.value:
            log.info(
                "poll still failing, for another reason",
                target=str(key),
                reason=reason.value,
                previous=previous.last_error_reason,
                detail=detail,
            )
        else:
            log.debug("poll failed", target=str(key), reason=reason.value, detail=detail)
