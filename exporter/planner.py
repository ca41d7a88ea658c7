"""The request planner: the one owner of the exporter's share of Mudbase's request limit.

Mudbase allows 2000 requests per sliding 15 minutes per client IP; the exporter spends at most
`mudbase.request_budget` of them (default 1600, divided among shards). Everything about that
budget is decided here, and nowhere else:

- **Exactly the budget.** Every request that reaches Mudbase takes a token from one bucket:
  list pages, polls, logs requests, their retries, and logins and token refreshes (`auth`).
  The bucket holds `B` tokens and fills at `(budget - B)` per 15 minutes, so that no sliding
  15-minute window, the first included (the bucket starts full), holds more than the budget.
- **Demand.** One round (one interval) needs: the list pages of every discovered project
  (`list`), the logs requests of every listed function with all the pages it may fetch (`poll`);
  and it may send change-driven logs requests for discovered functions (`logs`), which are
  optional and get only what the round leaves after the required ones and a fifth of headroom.
- **Measured conditions.** The re-sends of required requests (retries, a second try after a
  401) are measured over the last 15 minutes, and a round plans for twice their rate, so that
  a retry finds room and a backlog drains. The latency of list pages is measured too: a
  listing reads its pages concurrently (at most `concurrency` at once, at the budget's pace),
  and its planned duration is the slower of the two.
- **Interval.** The configured interval, or longer for everyone alike when a round's required
  requests (re-sends included) would not fit the budget, or when the biggest listing could not
  end a tenth of the interval before a poll's deadline (so within 70% of the interval) at
  the budget's pace and the measured latency. A change of the interval is logged once, at
  warning level.
- **Spread.** The required polls of a round are spread over the time the budget needs to pay
  for them (at least 10 s or the interval, at most the interval), the same every round: every
  function is polled exactly once per interval, start-up included.
- **Priorities.** The bucket (ten seconds of budget, or a sixth of a shorter interval) lets
  requests go by priority, not first come first served: logins and refreshes, list pages
  (they carry every discovered function's stats), listed functions' polls, then optional logs
  requests; within a kind, the request whose poll ends first goes first (a retry before the
  next round's first tries). An optional request may not take the
  bucket below half full, so it never delays a required one, and it is dropped rather than sent
  past its deadline (counted in `requests_skipped`: only those, not the ones a round's share
  left out). At most `concurrency` requests are in flight.
- **429s.** A Retry-After pauses every request, those already waiting included (the limit is
  per IP); after it one request goes at once and the others at the budget's pace, not in a
  burst. A 429 without one pauses every request for 2 s, doubling with each further episode
  (at most 60 s), until a request sent after the pause is answered. A required request whose
  poll would end before the pause does is refused at once (`RefusedByPause`): that is the
  pause's doing, not its function's error. The status page shows when the pause ends.
- **Optional logs requests.** What a round leaves for them is shared among the discovered
  projects by their size, each at its listing; a function whose failed count rose is served
  first across the whole round, whatever its project's share (`LogsCredit`).
- **Projection.** `--config.check` prints a plan made by the same function from the config.

The planner outlives reloads: the bucket's level, a pause and its backoff carry over.
"""

import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from enum import StrEnum

from exporter.errors import PollError, Reason
from exporter.logs import get_logger
from exporter.selfmetrics import ExporterMetrics
from exporter.upstream import LIST_PAGE_SIZE

log = get_logger("exporter.planner")

MUDBASE_WINDOW = 15 * 60.0  # Mudbase counts requests per client IP over this sliding window
MUDBASE_LIMIT = 2000  # requests per window and client IP, Mudbase's default
BURST_SECONDS = 10.0  # the bucket holds this much of the budget...
BURST_SHARE = 1 / 6  # ... or this share of a shorter interval (the same share of a round)
OPTIONAL_RESERVE = 0.5  # of the bucket: optional requests leave at least this much in it
LOGS_HEADROOM = 0.2  # of a round's budget, left unused by optional logs requests
FAILURE_RESERVE = 0.5  # of a round's optional logs requests, kept for functions now failing
POLL_DEADLINE_SHARE = 0.8  # a poll (a listing: all its pages) is cut off at this share
DEADLINE_MARGIN = 0.1  # of the interval: optional requests and older logs pages stop this
# long before their poll's deadline, to be answered in time; a listing is planned to end then
LISTING_SHARE = POLL_DEADLINE_SHARE - DEADLINE_MARGIN
FIRST_ROUND_SPREAD = 10.0  # seconds: the shortest spread of a round's required polls
STRETCH_TOLERANCE = 0.05  # a stretched interval is not shortened by less than this
RESEND_HEADROOM = 2.0  # re-sends are planned at this many times their measured rate
MIN_MEASURED = 50  # first tries in the window before their re-send rate is trusted
LATENCY_WEIGHT = 0.2  # of each new list page's latency in the running estimate
UNHINTED_PAUSE = 2.0  # after a 429 with no Retry-After; doubles while they keep coming
MAX_UNHINTED_PAUSE = 60.0

# The event-loop time by which the current poll must end; set by the poller for its task.
POLL_DEADLINE: ContextVar[float | None] = ContextVar("POLL_DEADLINE", default=None)


class RequestKind(StrEnum):
    """What a request is for; also its priority, highest first."""

    AUTH = "auth"  # a login or a token refresh: every other request needs its token
    LIST = "list"  # a list page of a discovered project: required
    POLL = "poll"  # a logs request of a listed function, any of its pages: required
    LOGS = "logs"  # a change-driven logs request of a discovered function: optional


PRIORITY = {kind: rank for rank, kind in enumerate(RequestKind)}
REQUIRED = (RequestKind.LIST, RequestKind.POLL)  # the kinds a round plans for


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


class NoTurnInTime(PollError):
    """A re-send (a retry) that could not get its turn before the last moment a retry may
    start (a tenth of the interval before its poll's deadline): the poll fails with the
    answer Mudbase gave before, not as a timeout of its own making."""

    def __init__(self) -> None:
        super().__init__(Reason.TIMEOUT, "no turn for a retry before the poll's deadline")

    @property
    def retryable(self) -> bool:
        return False


def bucket_size(budget: float, interval: float) -> float:
    """Tokens the bucket holds: ten seconds of the budget, or a sixth of a shorter interval
    (so that a test running time faster keeps the same share of a round); at least two, at
    most half the budget."""
    burst = min(BURST_SECONDS, interval * BURST_SHARE)
    return max(1.0, min(budget / 2, max(2.0, budget * burst / MUDBASE_WINDOW)))


def refill_rate(budget: float, interval: float) -> float:
    """Tokens a second: a full bucket and what it gains in 15 minutes make the budget, so no
    sliding window ever holds more than the budget."""
    return (budget - bucket_size(budget, interval)) / MUDBASE_WINDOW


def pace_of(budget: float, interval: float) -> float:
    """Seconds per request at the rate the bucket fills: what every round is paid at."""
    return 1 / refill_rate(budget, interval)


@dataclass(frozen=True)
class ProjectSize:
    """A discovered project's cost: list pages per round, and the functions selected from it
    (its share of the optional logs requests). One page until it has been listed."""

    pages: int = 1
    functions: int = LIST_PAGE_SIZE


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
class Conditions:
    """What the plan knows of Mudbase beside the demand: the concurrency allowed, and what was
    measured (nothing yet in a projection)."""

    concurrency: int = 8
    resend_rate: float = 0.0  # re-sends per first try of a required request, last 15 minutes
    list_latency: float = 0.0  # seconds a list page takes to be answered, a running estimate

    @property
    def cost(self) -> float:
        """Requests a required request costs, its planned re-sends included."""
        return 1 + RESEND_HEADROOM * self.resend_rate


@dataclass(frozen=True)
class Plan:
    """One round: its interval, what it sends by kind, and how its polls are spread."""

    configured_interval: float
    interval: float
    budget: float  # requests per 15 minutes
    demand: Demand
    conditions: Conditions
    logs_requests: float  # optional logs requests the round leaves room for

    @property
    def pace(self) -> float:
        return pace_of(self.budget, self.configured_interval)

    @property
    def stretched(self) -> bool:
        return self.interval > self.configured_interval

    @property
    def required(self) -> float:
        """Required requests a round plans for, re-sends included."""
        return self.demand.required * self.conditions.cost

    @property
    def spread(self) -> float:
        """The required polls of a round go out over this first part of the interval: as long
        as the budget needs to pay for them, at least 10 s (or the interval), at most all."""
        paying = self.required * self.pace
        return min(self.interval, max(min(self.interval, FIRST_ROUND_SPREAD), paying))

    def per_15m(self) -> dict[RequestKind, float]:
        """Requests per 15 minutes by kind (optional logs requests at most; re-sends
        included)."""
        rounds, cost = MUDBASE_WINDOW / self.interval, self.conditions.cost
        return {
            RequestKind.LIST: self.demand.list_pages * cost * rounds,
            RequestKind.POLL: self.demand.poll_requests * cost * rounds,
            RequestKind.LOGS: self.logs_requests * rounds,
        }

    def discovery_capacity(self) -> tuple[int, int]:
        """Discovered functions whose listings fit a round at the configured interval, once
        the listed functions are paid for: in all, and in one project (its listing is planned
        to end a tenth of the interval before a poll's deadline, at the budget's pace)."""
        per_round = self.configured_interval / self.pace
        pages = max(0, int(per_round - self.demand.poll_requests))
        one_project = int(per_round * LISTING_SHARE)
        return pages * LIST_PAGE_SIZE, min(pages, one_project) * LIST_PAGE_SIZE

    def logs_share(self, project: str) -> float:
        """A discovered project's optional logs requests per round: by its size."""
        projects = self.demand.projects
        total = sum(size.functions for size in projects.values())
        size = projects.get(project)
        if size is None or total == 0:
            return 0.0
        return self.logs_requests * size.functions / total


def listing_seconds(pages: float, pace: float, conditions: Conditions) -> float:
    """How long a listing of `pages` takes: its first page (which tells how many there are),
    then the others concurrently, at the budget's pace or `concurrency` at a time at the
    measured latency, whichever is slower."""
    if pages <= 0:
        return 0.0
    latency = conditions.list_latency
    rest = pages - 1
    at_the_latency = math.ceil(rest / conditions.concurrency) * latency
    return max(pace, latency) + max(rest * pace, at_the_latency)


def make_plan(
    demand: Demand, interval: float, budget: float, conditions: Conditions | None = None
) -> Plan:
    """The round for this demand: the interval stretched if it must be, and what is left."""
    conditions = conditions or Conditions()
    pace = pace_of(budget, interval)
    required = demand.required * conditions.cost
    biggest = demand.biggest_listing * conditions.cost
    effective = max(
        interval,
        required * pace,
        listing_seconds(biggest, pace, conditions) / LISTING_SHARE,
    )
    logs = max(0.0, effective / pace * (1 - LOGS_HEADROOM) - required)
    if not (demand.projects and demand.change_driven_logs):
        logs = 0.0  # nothing would send them
    return Plan(interval, effective, budget, demand, conditions, logs)


@dataclass(order=True)
class _Waiter:
    priority: int
    deadline: float  # within a kind, the request whose poll ends first goes first
    order: int
    kind: RequestKind = field(compare=False)
    queued_at: float = field(compare=False)
    granted: "asyncio.Future[float]" = field(compare=False)


class _PriorityBucket:
    """A token bucket handing out requests by priority, with slots for requests in flight and
    a pause that holds everyone.

    aiolimiter's leaky bucket serves waiters first come, first served and cannot say when it
    will next have room; this one needs both, so it is the arithmetic of a token bucket and a
    heap of waiters, woken by one timer of the event loop.
    """

    def __init__(
        self, per_window: float, interval: float, slots: int, metrics: ExporterMetrics
    ) -> None:
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
        self.configure(per_window, interval, slots)

    def configure(self, per_window: float, interval: float, slots: int) -> None:
        """A new budget, interval or concurrency (a reload): the level and a pause carry over."""
        self._rate = refill_rate(per_window, interval)
        self._capacity = bucket_size(per_window, interval)
        self._slots = slots
        if self._level is not None:
            self._level = min(self._level, self._capacity)

    async def acquire(
        self, kind: RequestKind, deadline: float | None, *, resend: bool = False
    ) -> float:
        """Wait for this request's turn; the loop time it was let go. An optional request or a
        re-send gives up at `deadline`."""
        loop = asyncio.get_running_loop()
        if deadline is not None and self.paused_until > deadline:
            raise self._refusal(kind, loop.time())
        waiter = _Waiter(
            PRIORITY[kind],
            math.inf if deadline is None else deadline,
            next(self._order),
            kind,
            loop.time(),
            loop.create_future(),
        )
        heapq.heappush(self._queue, waiter)
        self._dispatch()
        try:
            if (kind is RequestKind.LOGS or resend) and deadline is not None:
                async with asyncio.timeout_at(deadline):
                    granted = await waiter.granted
            else:
                granted = await waiter.granted
        except TimeoutError:
            self._give_back(waiter)
            if resend:
                raise NoTurnInTime from None
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


class ResendRate:
    """Re-sends per first try of required requests over the last 15 minutes (loop time), in
    one-second buckets: memory stays bounded however many requests there are."""

    def __init__(self) -> None:
        self._buckets: deque[list[float]] = deque()  # [second, first tries, re-sends]
        self._first = 0
        self._resent = 0

    def add(self, now: float, resend: bool) -> None:
        second = float(int(now))
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        self._buckets[-1][2 if resend else 1] += 1
        self._resent += resend
        self._first += not resend
        while self._buckets and self._buckets[0][0] <= now - MUDBASE_WINDOW:
            _, first, resent = self._buckets.popleft()
            self._first -= int(first)
            self._resent -= int(resent)

    def rate(self) -> float:
        """0 until enough first tries were seen to tell."""
        return self._resent / self._first if self._first >= MIN_MEASURED else 0.0


@dataclass(frozen=True)
class _Waiting:
    """A project's failing functions a listing left out: their cost, since when they wait,
    and when that was last said (a project whose listings stopped is forgotten)."""

    cost: float
    since: float  # loop time
    updated: float


class LogsCredit:
    """A round's optional logs requests, shared among the discovered projects at their
    listings, failures first across the round.

    Two accounts. The round's pool fills at the plan's logs requests per interval and holds
    at most a round and a half's worth; every request granted takes from it, so the rounds
    grant no more than the plan leaves. Each project's credit grows by its share (by size) at
    each of its listings, carried over up to two shares (or one request's cost).

    A request of a function whose failed count rose takes from the pool only, whatever its
    project's share, so such functions anywhere in the round go first (most failing first
    within a listing). When they do not all fit, the ones left out wait, and are served in
    the order they began to wait: a listing's failing functions leave in the pool what the
    projects waiting longer wait for. Any other request takes from both accounts, and leaves
    in the pool what every other project's failing functions wait for, and at least half a
    round's worth for failures to come.
    """

    def __init__(self) -> None:
        self._pool: float | None = None  # full at first use
        self._updated = 0.0  # loop time
        self._credit: dict[str, float] = {}
        self._waiting: dict[str, _Waiting] = {}

    def keep_only(self, projects: Iterable[str]) -> None:
        """Forget the projects no longer polled."""
        kept = set(projects)
        self._credit = {name: c for name, c in self._credit.items() if name in kept}
        self._waiting = {name: w for name, w in self._waiting.items() if name in kept}

    def grant(
        self, plan: Plan, project: str, costs: Sequence[int], failing: int, now: float
    ) -> int:
        """How many of `costs`, in order, are granted; the first `failing` ones fail."""
        pool = self._refill(plan, now)
        self._forget_stopped(now, plan.interval)
        waited = self._waiting.pop(project, None)
        since = waited.since if waited is not None else now
        ahead = sum(w.cost for w in self._waiting.values() if w.since < since)
        granted, pool, _ = _take(costs[:failing], pool, floor=ahead)
        if left := sum(costs[granted:failing]):
            self._waiting[project] = _Waiting(left, since, now)
        share = plan.logs_share(project)
        ceiling = max(2 * share, float(plan.demand.pages_per_poll))
        credit = min(self._credit.get(project, 0.0) + share, ceiling)
        if granted == failing:  # else the others wait behind this project's failures
            others = sum(w.cost for w in self._waiting.values())
            floor = max(FAILURE_RESERVE * plan.logs_requests, others)
            more, pool, credit = _take(costs[failing:], pool, floor=floor, credit=credit)
            granted += more
        self._credit[project] = credit
        self._pool = pool
        return granted

    def _forget_stopped(self, now: float, interval: float) -> None:
        """A project that said nothing for two rounds (its listings fail) reserves nothing."""
        stale = [name for name, w in self._waiting.items() if now - w.updated > 2 * interval]
        for name in stale:
            del self._waiting[name]

    def _refill(self, plan: Plan, now: float) -> float:
        """The pool at `now`: full at first use; it holds a round and a half's worth (at
        least the reserve and one request's cost)."""
        per_round = plan.logs_requests
        capacity = (1 + FAILURE_RESERVE) * per_round
        if per_round > 0:
            capacity = max(capacity, FAILURE_RESERVE * per_round + plan.demand.pages_per_poll)
        if self._pool is None:
            self._pool = capacity
        elif now > self._updated:
            self._pool += (now - self._updated) * per_round / plan.interval
        self._updated = max(self._updated, now)
        self._pool = min(self._pool, capacity)
        return self._pool


def _take(
    costs: Sequence[int], pool: float, *, floor: float, credit: float = math.inf
) -> tuple[int, float, float]:
    """How many of `costs`, in order, the pool pays without going below `floor` (and the
    credit pays, if it counts): that many, and what the pool and the credit keep."""
    taken = 0
    for cost in costs:
        if cost > credit or pool - cost < floor:
            break
        taken, pool, credit = taken + 1, pool - cost, credit - cost
    return taken, pool, credit


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
        self._bucket = _PriorityBucket(budget, interval, concurrency, metrics)
        self._logs_credit = LogsCredit()
        self._resends = ResendRate()
        self._list_latency = 0.0  # seconds, a running estimate
        demand = Demand(pages_per_poll=pages_per_poll, change_driven_logs=change_driven_logs)
        # the planner's whole state of a round
        self.plan = make_plan(demand, interval, budget, Conditions(concurrency))
        self._announced = self.plan.interval  # the interval last logged
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
        self._bucket.configure(budget, interval, concurrency)
        demand = replace(
            self.plan.demand, pages_per_poll=pages_per_poll, change_driven_logs=change_driven_logs
        )
        conditions = replace(self.plan.conditions, concurrency=concurrency)
        self._replan(demand, conditions, interval, budget)

    def set_targets(self, listed: int, projects: Iterable[str]) -> None:
        """The listed functions and discovered projects this replica polls; projects already
        listed keep their known size, new ones count one page until listed."""
        known = self.plan.demand.projects
        sizes = {name: known.get(name, ProjectSize()) for name in projects}
        self._logs_credit.keep_only(sizes)
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
    def deadline_margin(self) -> float:
        """Seconds before a poll's deadline at which its optional parts stop."""
        return self.plan.interval * DEADLINE_MARGIN

    def _replan(
        self,
        demand: Demand,
        conditions: Conditions | None = None,
        interval: float | None = None,
        budget: float | None = None,
    ) -> None:
        """The plan for a new demand, configuration or measurement; the rest as it was. A
        change of the interval by more than the tolerance is logged, once."""
        previous = self.plan
        plan = make_plan(
            demand,
            previous.configured_interval if interval is None else interval,
            previous.budget if budget is None else budget,
            previous.conditions if conditions is None else conditions,
        )
        shrinks_a_little = plan.stretched and plan.interval < previous.interval
        if shrinks_a_little and math.isclose(
            plan.interval, previous.interval, rel_tol=STRETCH_TOLERANCE
        ):
            plan = replace(plan, interval=previous.interval)  # not worth a change
        self.plan = plan
        if not math.isclose(plan.interval, self._announced, rel_tol=STRETCH_TOLERANCE):
            self._announced = plan.interval
            log.warning(
                "interval changed to keep every round within the request budget",
                configured=round(plan.configured_interval, 1),
                effective=round(plan.interval, 1),
                required_per_round=round(plan.required, 1),
                resend_rate=round(plan.conditions.resend_rate, 3),
                list_latency=round(plan.conditions.list_latency, 2),
                budget_per_15m=round(plan.budget),
            )
        self._publish_plan()

    def _publish_plan(self) -> None:
        self._metrics.poll_interval.set(self.plan.interval)
        self._metrics.configured_poll_interval.set(self.plan.configured_interval)
        self._metrics.request_budget.set(self.plan.budget)
        for kind, per_15m in self.plan.per_15m().items():
            self._metrics.planned_requests.labels(kind.value).set(per_15m)

    def _measured(self, kind: RequestKind, resend: bool, sent_at: float, now: float) -> None:
        """A required request was answered (or failed): the re-send rate and, for a list
        page, the latency, fed back into the plan when they moved."""
        if kind not in REQUIRED:
            return
        self._resends.add(now, resend)
        if kind is RequestKind.LIST:
            self._list_latency += LATENCY_WEIGHT * (now - sent_at - self._list_latency)
        planned = self.plan.conditions
        rate, latency = self._resends.rate(), self._list_latency
        moved = not (
            math.isclose(rate, planned.resend_rate, abs_tol=0.005)
            and math.isclose(latency, planned.list_latency, rel_tol=0.05, abs_tol=0.01)
        )
        if moved:  # else the plan stays, and so does the interval
            measured = replace(planned, resend_rate=rate, list_latency=latency)
            self._replan(self.plan.demand, measured)

    def logs_allowance(
        self, project: str, costs: Sequence[int], *, failing: int = 0, now: float
    ) -> int:
        """How many of a project's due logs requests (their costs in pages, in order; the first
        `failing` of them for functions whose failures rose) it may send this round, at loop
        time `now` (see `LogsCredit`). The ones left out wait for a later round: they are not
        skipped (nothing was lost)."""
        return self._logs_credit.grant(self.plan, project, costs, failing, now)

    # -- every request's turn -------------------------------------------------------------

    @asynccontextmanager
    async def turn(self, kind: RequestKind, *, resend: bool = False) -> AsyncIterator[float]:
        """Wait for a request's turn (by priority, then its poll's deadline, within the
        budget and the concurrency, never during a pause); yields the loop time it was let
        go, its send time. `resend`: a retry, or a second try after a 401. An optional request
        not let go a tenth of the interval before its poll's deadline is skipped, a re-send
        then gives up (`NoTurnInTime`); a login or refresh waits whatever the poll that needed
        it."""
        deadline = None if kind is RequestKind.AUTH else POLL_DEADLINE.get()
        if (kind is RequestKind.LOGS or resend) and deadline is not None:  # time to be answered
            deadline -= self.deadline_margin
        sent_at = await self._bucket.acquire(kind, deadline, resend=resend)
        try:
            yield sent_at
        finally:
            self._bucket.release()
        # answered (a request cut off by its deadline says nothing of Mudbase's latency)
        self._measured(kind, resend, sent_at, asyncio.get_running_loop().time())

    def rate_limited(self, retry_after: float | None) -> None:
        """Mudbase answered 429: pause every request, as long as it said or by the backoff."""
        if retry_after is not None:
            self._bucket.pause(retry_after)
        else:
            self._bucket.pause_unhinted()

    def answered(self, sent_at: float) -> None:
        self._bucket.answered(sent_at)

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
    concurrency: int = 8,
) -> Plan:
    """The plan a configuration starts with (each discovered project one page until listed,
    nothing measured yet): what `--config.check` prints and the exporter starts from."""
    projects = dict.fromkeys(discovered, ProjectSize())
    demand = Demand(listed, pages_per_poll, projects, change_driven_logs)
    return make_plan(demand, interval, budget, Conditions(concurrency))
