"""The request planner: the one owner of the exporter's share of Mudbase's request limit.

Mudbase allows 2000 requests per sliding 15 minutes per client IP; the exporter spends at most
`mudbase.request_budget` of them (default 1600, divided among shards). Everything about that
budget is decided here, and nowhere else:

- **Demand.** One round (one interval) needs: the list pages of every discovered project
  (`list`), the logs requests of every listed function with all the pages it may fetch (`poll`);
  and it may send change-driven logs requests for discovered functions (`logs`), which are
  optional and get only what the round leaves after the required ones and a fifth of headroom.
- **Interval.** The configured interval, or longer for everyone alike when a round's required
  requests would not fit the budget, or when the biggest listing could not end within a poll's
  deadline (80% of the interval) at the budget's pace.
- **Spread.** The required polls of a round are spread over the time the budget needs to pay
  for them (at least 10 s or the interval, at most the interval), the same every round: every
  function is polled exactly once per interval, start-up included.
- **Priorities.** A token bucket holding ten seconds of budget lets requests go by priority,
  not first come first served: list pages (they carry every discovered function's stats), then
  listed functions' polls, then optional logs requests. An optional request may not take the
  bucket below half full, so it never delays a required one, and it is dropped rather than sent
  past its deadline. At most `concurrency` requests are in flight.
- **429s.** A Retry-After pauses every request, those already waiting included (the limit is
  per IP); after it one request goes at once and the others at the budget's pace, not in a
  burst. A 429 without one pauses every request for 2 s, doubling with each further episode
  (at most 60 s), until a request sent after the pause is answered. A required request whose
  poll would end before the pause does is refused at once (`RefusedByPause`): that is the
  pause's doing, not its function's error. The status page shows when the pause ends.
- **Projection.** `--config.check` prints a plan made by the same function from the config.

The planner outlives reloads: the bucket's level, a pause and its backoff carry over.
"""

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from enum import StrEnum

from exporter.errors import PollError, Reason
from exporter.logs import get_logger
from exporter.selfmetrics import ExporterMetrics

log = get_logger("exporter.planner")

MUDBASE_WINDOW = 15 * 60.0  # Mudbase counts requests per client IP over this sliding window
MUDBASE_LIMIT = 2000  # requests per window and client IP, Mudbase's default
BURST_SECONDS = 10.0  # the bucket holds this much of the budget
OPTIONAL_RESERVE = 0.5  # of the bucket: optional requests leave at least this much in it
LOGS_HEADROOM = 0.2  # of a round's budget, left unused by optional logs requests
POLL_DEADLINE_SHARE = 0.8  # a poll (a listing: all its pages) is cut off at this share
RETRY_DEADLINE_SHARE = 0.7  # no retry is scheduled past this share of the interval
FIRST_ROUND_SPREAD = 10.0  # seconds: the shortest spread of a round's required polls
STRETCH_TOLERANCE = 0.05  # a stretched interval is not shortened by less than this
OPTIONAL_MARGIN = 0.1  # of the interval: optional requests go out this long before the deadline
UNHINTED_PAUSE = 2.0  # after a 429 with no Retry-After; doubles while they keep coming
MAX_UNHINTED_PAUSE = 60.0
FUNCTIONS_PER_LIST_PAGE = 100

# The event-loop time by which the current poll must end; set by the poller for its task.
POLL_DEADLINE: ContextVar[float | None] = ContextVar("POLL_DEADLINE", default=None)


class RequestKind(StrEnum):
    """What a request is for; also its priority, highest first."""

    LIST = "list"  # a list page of a discovered project: required
    POLL = "poll"  # a logs request of a listed function, any of its pages: required
    LOGS = "logs"  # a change-driven logs request of a discovered function: optional


PRIORITY = {kind: rank for rank, kind in enumerate(RequestKind)}


class RequestSkipped(Exception):
    """An optional request that could not go out before its deadline."""


class RefusedByPause(PollError):
    """A required request refused because a 429 pause, which every request shares (Mudbase
    limits per client IP), outlasts its poll: the poll fails, but not by its function's own
    error. Retrying it is pointless: the pause outlasts the poll."""

    def __init__(self, seconds_left: float) -> None:
        super().__init__(
            Reason.RATE_LIMITED,
            f"every request paused for {seconds_left:.0f}s by a 429 from Mudbase",
        )

    @property
    def retryable(self) -> bool:
        return False


@dataclass(frozen=True)
class ProjectSize:
    """A discovered project's cost: list pages per round, and the functions selected from it
    (its share of the optional logs requests). One page until it has been listed."""

    pages: int = 1
    functions: int = FUNCTIONS_PER_LIST_PAGE


@dataclass(frozen=True)
class Demand:
    """What one round requires of the budget."""

    listed: int = 0  # listed functions, polled every interval
    pages_per_poll: int = 1  # logs pages one poll of a listed function may fetch
    projects: Mapping[str, ProjectSize] = field(default_factory=dict)
    change_driven_logs: bool = True  # False: no logs requests for discovered functions (API key)

    @property
    def poll_requests(self) -> int:
        return self.listed * self.pages_per_poll

    @property
    def list_pages(self) -> int:
        return sum(size.pages for size in self.projects.values())

    @property
    def required(self) -> int:
        return self.poll_requests + self.list_pages

    @property
    def biggest_listing(self) -> int:
        return max((size.pages for size in self.projects.values()), default=0)


@dataclass(frozen=True)
class Plan:
    """One round: its interval, what it sends by kind, and how its polls are spread."""

    configured_interval: float
    interval: float
    budget: float  # requests per 15 minutes
    demand: Demand
    logs_requests: float  # optional logs requests the round leaves room for

    @property
    def round_budget(self) -> float:
        return self.budget * self.interval / MUDBASE_WINDOW

    @property
    def stretched(self) -> bool:
        return self.interval > self.configured_interval

    @property
    def spread(self) -> float:
        """The required polls of a round go out over this first part of the interval: as long
        as the budget needs to pay for them, at least 10 s (or the interval), at most all."""
        paying = self.demand.required * MUDBASE_WINDOW / self.budget
        return min(self.interval, max(min(self.interval, FIRST_ROUND_SPREAD), paying))

    def per_15m(self) -> dict[RequestKind, float]:
        """Requests per 15 minutes by kind (optional logs requests at most)."""
        rounds = MUDBASE_WINDOW / self.interval
        return {
            RequestKind.LIST: self.demand.list_pages * rounds,
            RequestKind.POLL: self.demand.poll_requests * rounds,
            RequestKind.LOGS: self.logs_requests * rounds,
        }

    def discovery_capacity(self) -> tuple[int, int]:
        """Discovered functions whose listings fit a round at the configured interval, once
        the listed functions are paid for: in all, and in one project (its listing must end
        within a poll's deadline at the budget's pace)."""
        round_budget = self.budget * self.configured_interval / MUDBASE_WINDOW
        pages = max(0, int(round_budget - self.demand.poll_requests))
        one_project = int(round_budget * POLL_DEADLINE_SHARE)
        return pages * FUNCTIONS_PER_LIST_PAGE, min(pages, one_project) * FUNCTIONS_PER_LIST_PAGE

    def logs_share(self, project: str) -> float:
        """A discovered project's optional logs requests per round: by its size."""
        projects = self.demand.projects
        total = sum(size.functions for size in projects.values())
        size = projects.get(project)
        if size is None or total == 0:
            return 0.0
        return self.logs_requests * size.functions / total


def make_plan(demand: Demand, interval: float, budget: float) -> Plan:
    """The round for this demand: the interval stretched if it must be, and what is left."""
    pace = MUDBASE_WINDOW / budget  # seconds per request at the budget's rate
    effective = max(
        interval,
        demand.required * pace,
        demand.biggest_listing * pace / POLL_DEADLINE_SHARE,
    )
    round_budget = budget * effective / MUDBASE_WINDOW
    logs = max(0.0, round_budget * (1 - LOGS_HEADROOM) - demand.required)
    if not (demand.projects and demand.change_driven_logs):
        logs = 0.0  # nothing would send them
    return Plan(interval, effective, budget, demand, logs)


@dataclass(order=True)
class _Waiter:
    priority: int
    order: int
    kind: RequestKind = field(compare=False)
    deadline: float | None = field(compare=False)
    queued_at: float = field(compare=False)
    granted: "asyncio.Future[float]" = field(compare=False)


class _PriorityBucket:
    """A token bucket handing out requests by priority, with slots for requests in flight and
    a pause that holds everyone.

    aiolimiter's leaky bucket serves waiters first come, first served and cannot say when it
    will next have room; this one needs both, so it is the arithmetic of a token bucket and a
    heap of waiters, woken by one timer of the event loop.
    """

    def __init__(self, per_window: float, slots: int, metrics: ExporterMetrics) -> None:
        self._metrics = metrics
        for kind in RequestKind:  # every kind from the start, so increase() sees the first
            metrics.request_wait.labels(kind.value)
            metrics.requests_skipped.labels(kind.value)
        self._rate = 1.0
        self._capacity = 1.0
        self._slots = 1
        self._level: float | None = None  # full at first use
        self._updated = 0.0
        self._in_flight = 0
        self._queue: list[_Waiter] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.paused_until = 0.0
        self.pause_ends_at = 0.0  # the same moment in Unix time, for other threads to read
        self._unhinted_in_a_row = 0
        self.configure(per_window, slots)

    def configure(self, per_window: float, slots: int) -> None:
        """A new budget or concurrency (a reload): the level and a pause carry over."""
        self._rate = per_window / MUDBASE_WINDOW
        self._capacity = max(2.0, self._rate * BURST_SECONDS)
        self._slots = slots
        if self._level is not None:
            self._level = min(self._level, self._capacity)

    async def acquire(self, kind: RequestKind, deadline: float | None) -> float:
        """Wait for this request's turn; the loop time it was let go."""
        loop = asyncio.get_running_loop()
        if deadline is not None and self.paused_until > deadline:
            raise self._refusal(kind, loop.time())
        waiter = _Waiter(
            PRIORITY[kind], next(self._order), kind, deadline, loop.time(), loop.create_future()
        )
        heapq.heappush(self._queue, waiter)
        self._dispatch()
        try:
            if kind is RequestKind.LOGS and deadline is not None:
                async with asyncio.timeout_at(deadline):
                    granted = await waiter.granted
            else:
                granted = await waiter.granted
        except TimeoutError:
            self._give_back(waiter)
            self._metrics.requests_skipped.labels(kind.value).inc()
            raise RequestSkipped from None
        except BaseException:
            self._give_back(waiter)
            raise
        self._metrics.request_wait.labels(kind.value).observe(granted - waiter.queued_at)
        return granted

    def _give_back(self, waiter: _Waiter) -> None:
        """A waiter let go the moment its caller gave up: its slot is free again."""
        granted = waiter.granted
        if granted.done() and not granted.cancelled() and granted.exception() is None:
            self.release()

    def release(self) -> None:
        """A request's answer came (or it failed): its slot is free."""
        self._in_flight -= 1
        self._dispatch()

    def _refill(self, now: float) -> float:
        """The bucket's level now: full at first use; it does not fill during a pause."""
        if self._level is None:
            self._level = self._capacity
        elif now > self._updated:
            self._level = min(self._capacity, self._level + (now - self._updated) * self._rate)
        self._updated = max(self._updated, now)
        return self._level

    def _dispatch(self) -> None:
        """Let go as many waiters as the bucket, the slots and a pause allow, by priority;
        else set the timer for when the first of them may go."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        level = self._refill(now)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            waiter = self._queue[0]
            if waiter.granted.done():  # its caller gave up, or was refused by a pause
                heapq.heappop(self._queue)
                continue
            if now < self.paused_until:
                self._timer = loop.call_at(self.paused_until, self._dispatch)
                return
            if self._in_flight >= self._slots:
                return  # release() dispatches again
            needed = 1.0
            if waiter.kind is RequestKind.LOGS:  # optional: leaves the reserve to the others
                needed += OPTIONAL_RESERVE * self._capacity
            if level < needed - 1e-9:
                self._timer = loop.call_at(now + (needed - level) / self._rate, self._dispatch)
                return
            heapq.heappop(self._queue)
            level -= 1.0
            self._level = level
            self._in_flight += 1
            waiter.granted.set_result(now)

    def pause(self, seconds: float) -> None:
        """No request from anyone for `seconds`; waiters whose deadline comes first are
        refused now rather than left to time out. The bucket does not fill meanwhile."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        until = now + seconds
        if until <= self.paused_until:
            return
        self._metrics.rate_limit_paused.inc(until - max(now, self.paused_until))
        self.paused_until = until
        self.pause_ends_at = time.time() + seconds
        # when the pause ends one request may go at once; the others follow at the budget's
        # pace, not in a burst of a full bucket
        self._refill(now)
        self._level, self._updated = 1.0, until
        log.info("rate limited by Mudbase: pausing every request", seconds=round(seconds, 1))
        for waiter in self._queue:
            ends_first = waiter.deadline is not None and waiter.deadline < until
            if ends_first and not waiter.granted.done():
                waiter.granted.set_exception(self._refusal(waiter.kind, now))
        self._dispatch()

    def pause_unhinted(self) -> None:
        """A 429 without Retry-After: pause, longer while they repeat. The 429s of requests
        already in flight during a pause belong to the same episode."""
        if asyncio.get_running_loop().time() < self.paused_until:
            return
        seconds = min(MAX_UNHINTED_PAUSE, UNHINTED_PAUSE * 2**self._unhinted_in_a_row)
        self._unhinted_in_a_row += 1
        self.pause(seconds)

    def answered(self, sent_at: float) -> None:
        """A request let go at `sent_at` was answered: if that was after the last pause, the
        next 429 without Retry-After starts from the base pause again."""
        if sent_at >= self.paused_until:
            self._unhinted_in_a_row = 0

    def _refusal(self, kind: RequestKind, now: float) -> Exception:
        self._metrics.requests_skipped.labels(kind.value).inc()
        if kind is RequestKind.LOGS:
            return RequestSkipped()
        return RefusedByPause(self.paused_until - now)


class RequestPlanner:
    """The budget's one owner: the plan of a round, and every request's turn."""

    def __init__(
        self,
        budget: float,
        interval: float,
        concurrency: int,
        metrics: ExporterMetrics,
        *,
        pages_per_poll: int = 1,
        change_driven_logs: bool = True,
    ) -> None:
        self._metrics = metrics
        self._bucket = _PriorityBucket(budget, concurrency, metrics)
        self._credit: dict[str, float] = {}
        demand = Demand(pages_per_poll=pages_per_poll, change_driven_logs=change_driven_logs)
        self.plan = make_plan(demand, interval, budget)  # the planner's whole state of a round
        self._publish_plan()

    def __repr__(self) -> str:
        return f"RequestPlanner({self.plan.budget:g} per 15m, interval {self.plan.interval:g}s)"

    # -- the plan -------------------------------------------------------------------------

    def configure(
        self,
        *,
        budget: float,
        interval: float,
        concurrency: int,
        pages_per_poll: int,
        change_driven_logs: bool = True,
    ) -> None:
        """A (re)loaded configuration; the bucket's level and a pause carry over."""
        self._bucket.configure(budget, concurrency)
        demand = replace(
            self.plan.demand, pages_per_poll=pages_per_poll, change_driven_logs=change_driven_logs
        )
        self._replan(demand, interval, budget)

    def set_targets(self, listed: int, projects: Iterable[str]) -> None:
        """The listed functions and discovered projects this replica polls; projects already
        listed keep their known size, new ones count one page until listed."""
        known = self.plan.demand.projects
        sizes = {name: known.get(name, ProjectSize()) for name in projects}
        self._credit = {name: c for name, c in self._credit.items() if name in sizes}
        self._replan(replace(self.plan.demand, listed=listed, projects=sizes))

    def project_listed(
        self, project: str, pages: int | None = None, functions: int | None = None
    ) -> None:
        """A listing told a project's size: its pages (known from its first page) or the
        functions selected from it (known at its end)."""
        demand = self.plan.demand
        current = demand.projects.get(project)
        if current is None:
            return
        size = ProjectSize(
            current.pages if pages is None else pages,
            current.functions if functions is None else functions,
        )
        if size != current:
            self._replan(replace(demand, projects={**demand.projects, project: size}))

    @property
    def interval(self) -> float:
        """The effective interval: every function is polled once per interval."""
        return self.plan.interval

    @property
    def poll_deadline(self) -> float:
        """Seconds one poll (a listing: all its pages), retries included, may take."""
        return self.plan.interval * POLL_DEADLINE_SHARE

    @property
    def retry_window(self) -> float:
        """Seconds after a poll's first try within which a retry may still be scheduled."""
        return self.plan.interval * RETRY_DEADLINE_SHARE

    def _replan(
        self, demand: Demand, interval: float | None = None, budget: float | None = None
    ) -> None:
        """The plan for a new demand (or configuration); the rest as it was."""
        previous = self.plan
        plan = make_plan(
            demand,
            previous.configured_interval if interval is None else interval,
            previous.budget if budget is None else budget,
        )
        self.plan = plan
        if plan.interval == previous.interval:
            pass
        elif (
            plan.interval > previous.interval  # must: the round no longer fits
            or not plan.stretched
            or not math.isclose(plan.interval, previous.interval, rel_tol=STRETCH_TOLERANCE)
        ):
            log.warning(
                "interval changed to keep every round within the request budget",
                configured=round(plan.configured_interval, 1),
                effective=round(plan.interval, 1),
                required_per_round=plan.demand.required,
                budget_per_15m=round(plan.budget),
            )
        else:  # shrinking a stretch by a few percent is not worth a change
            self.plan = replace(plan, interval=previous.interval)
        self._publish_plan()

    def _publish_plan(self) -> None:
        self._metrics.poll_interval.set(self.plan.interval)
        self._metrics.configured_poll_interval.set(self.plan.configured_interval)
        self._metrics.request_budget.set(self.plan.budget)
        for kind, per_15m in self.plan.per_15m().items():
            self._metrics.planned_requests.labels(kind.value).set(per_15m)

    def logs_allowance(self, project: str, costs: Sequence[int]) -> int:
        """How many of a project's due logs requests (their costs in pages, most due first)
        it may send this round: its share of what the round leaves; unspent share carries
        over to its next round, up to two rounds' worth (or one request's cost)."""
        share = self.plan.logs_share(project)
        ceiling = max(2 * share, float(self.plan.demand.pages_per_poll))
        credit = min(self._credit.get(project, 0.0) + share, ceiling)
        granted, spent = 0, 0
        for cost in costs:
            if spent + cost > credit:
                break
            granted, spent = granted + 1, spent + cost
        self._credit[project] = credit - spent
        if granted < len(costs):
            self._metrics.requests_skipped.labels(RequestKind.LOGS.value).inc(len(costs) - granted)
        return granted

    # -- every request's turn -------------------------------------------------------------

    @asynccontextmanager
    async def turn(self, kind: RequestKind) -> AsyncIterator[float]:
        """Wait for a request's turn (by priority, within the budget and the concurrency,
        never during a pause); yields the loop time it was let go, its send time. An optional
        request not let go a tenth of the interval before its poll's deadline is skipped."""
        deadline = POLL_DEADLINE.get()
        if kind is RequestKind.LOGS and deadline is not None:  # time left to be answered
            deadline -= self.plan.interval * OPTIONAL_MARGIN
        sent_at = await self._bucket.acquire(kind, deadline)
        try:
            yield sent_at
        finally:
            self._bucket.release()

    def rate_limited(self, retry_after: float | None) -> None:
        """Mudbase answered 429: pause every request, as long as it said or by the backoff."""
        if retry_after is not None:
            self._bucket.pause(retry_after)
        else:
            self._bucket.pause_unhinted()

    def answered(self, sent_at: float) -> None:
        self._bucket.answered(sent_at)

    def paused_for(self) -> float:
        """Seconds until requests may go again (0 when not paused)."""
        return max(0.0, self._bucket.paused_until - asyncio.get_running_loop().time())

    def pause_end(self) -> float | None:
        """The Unix time at which the current 429 pause ends; None when there is none. Any
        thread may ask (the status page does)."""
        ends_at = self._bucket.pause_ends_at
        return ends_at if ends_at > time.time() else None


def shard_budget(request_budget: float, total_shards: int) -> float:
    """Replicas behind one egress IP share Mudbase's limit: each gets its share."""
    return request_budget / total_shards


def projected_plan(
    listed: int,
    discovered: Iterable[str],
    interval: float,
    budget: float,
    *,
    pages_per_poll: int,
    change_driven_logs: bool = True,
) -> Plan:
    """The plan a configuration starts with (each discovered project one page until listed):
    what `--config.check` prints and the exporter starts from."""
    projects = dict.fromkeys(discovered, ProjectSize())
    demand = Demand(listed, pages_per_poll, projects, change_driven_logs)
    return make_plan(demand, interval, budget)
