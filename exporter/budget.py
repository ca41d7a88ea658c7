"""The request budget: every request to Mudbase goes through one shared rate limiter.

Mudbase limits each client IP to 2000 requests per sliding 15 minutes. The exporter spends at
most `mudbase.request_budget` of them (default 1600, leaving room for other clients on the same
IP), through an aiolimiter leaky bucket that holds ten seconds' worth of requests: in any
15-minute window that is at most the budget plus about 1% (the bucket's size), well inside the
headroom. A 429's Retry-After pauses every request, not only the function that got it: the
limit is per IP. A 429 without a Retry-After pauses every request too, for 2 s, doubling with
each further episode of them (at most 60 s) until a request sent after the pause is answered;
the 429s of requests already in flight during a pause belong to the same episode.
"""

import asyncio
from contextvars import ContextVar

from aiolimiter import AsyncLimiter

from exporter.errors import PollError, Reason
from exporter.logs import get_logger

log = get_logger("exporter.budget")

MUDBASE_WINDOW = 15 * 60.0
# The event-loop time by which the current poll must end; set by the poller for its task.
POLL_DEADLINE: ContextVar[float | None] = ContextVar("POLL_DEADLINE", default=None)
BURST_SECONDS = 10.0
UNHINTED_PAUSE = 2.0  # after a 429 with no Retry-After; doubles while they keep coming
MAX_UNHINTED_PAUSE = 60.0


def effective_interval(interval: float, requests_per_round: float, budget: float) -> float:
    """The configured interval, or longer if one round of requests would not fit the budget."""
    return max(interval, requests_per_round * MUDBASE_WINDOW / budget)


class RequestBudget:
    def __init__(self, requests_per_window: float, window: float = MUDBASE_WINDOW) -> None:
        self.per_window = requests_per_window
        rate = requests_per_window / window
        self._limiter = AsyncLimiter(max(1.0, rate * BURST_SECONDS), BURST_SECONDS)
        self._paused_until = 0.0
        self._unhinted_in_a_row = 0

    def __repr__(self) -> str:
        return f"RequestBudget({self.per_window:g} per 15m)"

    async def acquire(self) -> None:
        """Wait for a pause to end, then for a slot in the budget.

        A poll whose deadline (POLL_DEADLINE) comes before the pause ends fails at once as
        `rate_limited`, rather than waiting and then timing out.
        """
        loop = asyncio.get_running_loop()
        deadline = POLL_DEADLINE.get()
        while (wait := self._paused_until - loop.time()) > 0:
            if deadline is not None and self._paused_until > deadline:
                raise PollError(
                    Reason.RATE_LIMITED,
                    f"every request paused for {wait:.0f}s by a 429 from Mudbase",
                )
            await asyncio.sleep(wait)
        await self._limiter.acquire()

    def pause(self, seconds: float) -> None:
        """Mudbase said 429 with Retry-After: no request from anyone for `seconds`."""
        until = asyncio.get_running_loop().time() + seconds
        if until > self._paused_until:
            self._paused_until = until
            log.info("rate limited by Mudbase: pausing every request", seconds=seconds)

    def paused_for(self) -> float:
        """Seconds until requests may go again (0 when not paused)."""
        return max(0.0, self._paused_until - asyncio.get_running_loop().time())

    def pause_unhinted(self) -> None:
        """Mudbase said 429 without Retry-After: pause everyone, longer while it repeats. The
        429s of requests already in flight during a pause belong to the same episode."""
        if asyncio.get_running_loop().time() < self._paused_until:
            return
        seconds = min(MAX_UNHINTED_PAUSE, UNHINTED_PAUSE * 2**self._unhinted_in_a_row)
        self._unhinted_in_a_row += 1
        self.pause(seconds)

    def succeeded(self, sent_at: float) -> None:
        """A request sent at `sent_at` (loop time) was answered: if it was sent after the last
        pause, the next 429 without Retry-After starts from the base pause again."""
        if sent_at >= self._paused_until:
            self._unhinted_in_a_row = 0
