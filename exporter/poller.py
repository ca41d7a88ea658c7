"""When to poll what: every function once per interval, spread evenly over the interval.

One asyncio task per function; a semaphore bounds how many polls run at once. The first round is
compressed into the first few seconds so that the exporter is ready quickly; after that function
i of n polls at phase i/n of every interval, so there is no thundering herd at each tick.
"""

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial

from exporter.budget import MUDBASE_WINDOW, POLL_DEADLINE, RequestBudget, effective_interval
from exporter.client import MudbaseClient
from exporter.config import ID_PATTERN
from exporter.errors import PollError, Reason
from exporter.executions import PAGE_SIZE, ExecutionTotals, page_limit
from exporter.logs import get_logger
from exporter.selfmetrics import ExporterMetrics
from exporter.state import StateStore
from exporter.targets import FunctionInfo, FunctionSettings, ProjectSelector, Shard, TargetKey
from exporter.upstream import FunctionStats, FunctionSummary

log = get_logger("exporter.poller")

FIRST_ROUND_SPREAD = 10.0  # seconds over which the first poll of every function is spread
LOGS_HEADROOM = 0.2  # of each round's budget, left unused by change-driven logs requests
MAX_LOGS_PER_ROUND = 100  # change-driven logs requests of one project in one round, at most
MAX_LIST_PAGES = 1000  # 100,000 functions in one project: beyond that, shard
POLL_DEADLINE_SHARE = 0.8  # one poll, retries included, is cut off at this share of the interval
EXTRA_PAGES_MARGIN = 0.1  # of the interval: older logs pages stop this long before the deadline
STRETCH_TOLERANCE = 0.05  # the listings' interval is changed only for a change beyond 5%


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


def second_poll_time(
    start: float, phase: float, interval: float, first: float, now: float
) -> float:
    """The regular tick after the first poll, but no later than one interval after it: the
    compressed first round would otherwise leave the last phases almost two intervals apart."""
    return min(next_poll_time(start, phase, interval, now), first + interval)


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
        max_age: float = 600.0,
        budget: RequestBudget | None = None,
        shard: Shard | None = None,
        logs_for_changes: bool = True,
        execution_metrics: bool = True,
        execution_pages: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._state = state
        self._metrics = metrics
        self._interval = interval
        self._base_interval = interval  # configured, already stretched for listed functions
        self._semaphore = asyncio.Semaphore(concurrency)
        self._keep_values_for = keep_values_for
        self._clock = clock
        self._max_age = max_age
        self._budget = budget
        self._shard = shard or Shard()
        self._tasks: dict[TargetKey, asyncio.Task[None]] = {}
        self._project_tasks: dict[str, asyncio.Task[None]] = {}
        self._selectors: dict[str, ProjectSelector] = {}
        self._seen: dict[TargetKey, tuple[object, ...]] = {}  # stats when logs were last fetched
        self._logs_at: dict[TargetKey, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._logs_in_flight: set[TargetKey] = set()  # one change-driven logs task a function
        self._logs_enabled = logs_for_changes
        self._execution_metrics = execution_metrics
        self._execution_pages = execution_pages
        self._logs_credit: dict[str, float] = {}
        self._pages: dict[str, int] = {}  # list pages per project, from its latest listing

    def apply(
        self,
        targets: Mapping[TargetKey, FunctionSettings],
        projects: Sequence[ProjectSelector] = (),
    ) -> None:
        """Poll exactly these functions and projects: start new ones, stop removed ones."""
        wanted = sorted(targets)
        self._selectors = {p.project: p for p in self._shard.own_projects(projects)}
        for project in [p for p in self._pages if p not in self._selectors]:
            del self._pages[project]
            self._logs_credit.pop(project, None)
        for key in [k for k in self._seen if k.project not in self._selectors]:
            self._seen.pop(key, None)
            self._logs_at.pop(key, None)
        self._state.set_targets(targets, discovered_projects=list(self._selectors))
        loop = asyncio.get_running_loop()
        start = loop.time()
        for key in set(self._tasks) - set(wanted):
            self._tasks.pop(key).cancel()
        for index, key in enumerate(wanted):
            if key not in self._tasks:
                phase = index / len(wanted)
                self._tasks[key] = asyncio.create_task(
                    self._every_interval(partial(self.poll_once, key), start, phase), name=str(key)
                )
        for project in set(self._project_tasks) - set(self._selectors):
            self._project_tasks.pop(project).cancel()
        for index, project in enumerate(sorted(self._selectors)):
            if project not in self._project_tasks:
                phase = index / len(self._selectors)
                self._project_tasks[project] = asyncio.create_task(
                    self._every_interval(partial(self.poll_project, project), start, phase),
                    name=f"project {project}",
                )
        self._metrics.targets.set(self._state.count())
        self._stretch_for_listings()
        self._metrics.poll_interval.set(self._interval)

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *self._project_tasks.values(), *self._background]
        self._tasks.clear()
        self._project_tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _every_interval(
        self, poll: Callable[[], Awaitable[None]], start: float, phase: float
    ) -> None:
        """Run `poll` at its phase of every interval, forever (until cancelled)."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(first_poll_delay(phase, self._interval))
        first = loop.time()
        await poll()
        due = second_poll_time(start, phase, self._interval, first, loop.time())
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            await poll()
            due = next_poll_time(start, phase, self._interval, loop.time())

    async def poll_project(self, project: str) -> None:
        """List the project (one request per 100 functions) and publish every function's stats
        from it; fetch the logs only of functions that changed, or not fetched for max_age."""
        selector = self._selectors.get(project)
        if selector is None:
            return
        started = time.monotonic()
        budget = self._interval * POLL_DEADLINE_SHARE
        POLL_DEADLINE.set(asyncio.get_running_loop().time() + budget)
        try:
            async with asyncio.timeout(budget):
                summaries = await self._list(project)
        except PollError as err:
            self._project_failed(project, err.reason, err.detail)
            return
        except TimeoutError:
            self._project_failed(project, Reason.TIMEOUT, "listing exceeded its deadline")
            return
        except Exception as err:  # a bug must not stop the other projects
            log.exception("unexpected error while listing", project=project)
            self._project_failed(project, Reason.INTERNAL, type(err).__name__)
            return
        finally:
            self._metrics.poll_duration.observe(time.monotonic() - started)
        self._publish(selector, summaries)

    async def _list(self, project: str) -> list[FunctionSummary]:
        summaries: list[FunctionSummary] = []
        page, pages = 1, 1
        while page <= pages:
            async with self._semaphore:
                answer = await self._client.function_page(project, page)
            summaries += answer.functions
            pages = min(answer.total_pages, MAX_LIST_PAGES)
            if page == 1:  # the listing's size is known now: a listing too long to finish
                self._pages[project] = pages  # in time stretches the next interval already
                self._stretch_for_listings()
            page += 1
        return summaries

    def _stretch_for_listings(self) -> None:
        """Listings cost a request per 100 functions, known only once listed: stretch the
        interval when they and the listed functions no longer fit the budget, or when the
        biggest listing could not end within its deadline at the budget's pace."""
        if self._budget is None:
            return
        per_window = self._budget.per_window
        round_requests = len(self._tasks) + sum(self._pages.values())
        biggest_listing = max(self._pages.values(), default=0) / POLL_DEADLINE_SHARE
        interval = effective_interval(
            self._base_interval, max(round_requests, biggest_listing), per_window
        )
        if math.isclose(interval, self._interval, rel_tol=STRETCH_TOLERANCE):
            return
        log.warning(
            "interval changed to keep the listings within the request budget",
            configured=round(self._base_interval, 1),
            effective=round(interval, 1),
            list_pages=sum(self._pages.values()),
            budget_per_15m=round(self._budget.per_window),
        )
        self._interval = interval
        self._metrics.poll_interval.set(interval)

    def _publish(self, selector: ProjectSelector, summaries: list[FunctionSummary]) -> None:
        found: dict[TargetKey, FunctionSummary] = {}
        for summary in summaries:
            key = TargetKey(selector.project, summary.id)
            if not ID_PATTERN.match(summary.id):
                log.debug("ignoring a function ID that is not a plain ID", target=str(key))
            elif selector.selects(summary.id, summary.name, summary.active):
                found[key] = summary
        gone = self._state.sync_project(
            selector.project,
            {
                key: (selector.settings, FunctionInfo(s.name, s.trigger_type, s.active))
                for key, s in found.items()
            },
        )
        for key in gone:
            self._seen.pop(key, None)
            self._logs_at.pop(key, None)
        self._metrics.targets.set(self._state.count())
        now = self._clock()
        for key, summary in found.items():
            self._state.record_success(key, summary.stats, now)
        self._fetch_changed_logs(selector.project, found, now)

    def _fetch_changed_logs(
        self, project: str, found: Mapping[TargetKey, FunctionSummary], now: float
    ) -> None:
        """Logs only where the listed stats moved (or max_age passed), oldest first, and no more
        per round than this project's share of the budget the list requests leave. The stats
        themselves come from the list; a logs request is optional and never marks a function
        down."""
        if not self._logs_enabled:
            return
        due = [
            key
            for key, summary in found.items()
            if key not in self._logs_in_flight
            and (
                self._seen.get(key) != _fingerprint(summary.stats)
                or now - self._logs_at.get(key, -math.inf) >= self._max_age
            )
        ]
        due.sort(key=lambda key: self._logs_at.get(key, -math.inf))
        credit = self._logs_credit.get(project, 0.0) + self._logs_per_project_round()
        spent = 0
        for key in due:
            total = found[key].stats.total_executions
            pages = self._pages_for(key, total)
            if spent + pages > min(credit, MAX_LOGS_PER_ROUND):
                break
            spent += pages
            self._seen[key] = _fingerprint(found[key].stats)
            self._logs_at[key] = now
            task = asyncio.create_task(self._optional_logs(key, pages, total), name=f"logs {key}")
            self._background.add(task)
            self._logs_in_flight.add(key)
            task.add_done_callback(self._background.discard)
            task.add_done_callback(partial(self._logs_done, key))
        self._logs_credit[project] = min(credit - spent, float(MAX_LOGS_PER_ROUND))

    def _extra_page_deadline(self) -> float:
        """Older logs pages stop a tenth of the interval before the poll's own deadline, so
        that a slow one ends the paging, not the poll (whose stats are already in hand)."""
        loop_deadline = POLL_DEADLINE.get()
        now = asyncio.get_running_loop().time()
        if loop_deadline is None:
            return now + self._interval * POLL_DEADLINE_SHARE
        return loop_deadline - self._interval * EXTRA_PAGES_MARGIN

    def _logs_done(self, key: TargetKey, _: asyncio.Task[None]) -> None:
        self._logs_in_flight.discard(key)

    def _executions_of(self, key: TargetKey) -> ExecutionTotals | None:
        state = self._state.get(key)
        return state.executions if state is not None else None

    def _pages_for(self, key: TargetKey, listed_total: int | None) -> int:
        """Logs pages worth fetching for a function, known from its listed total: enough for
        its new executions, at most the configured pages per poll."""
        totals = self._executions_of(key)
        if not self._execution_metrics or totals is None:
            return 1
        expected = totals.expected_new(listed_total)
        return max(1, min(self._execution_pages, math.ceil(expected / PAGE_SIZE)))

    def _logs_per_project_round(self) -> float:
        """This project's share of what the budget leaves per round once every project's list
        pages are paid for, with a fifth kept as headroom (fractions carry over)."""
        if self._budget is None:
            return float(MAX_LOGS_PER_ROUND)
        per_round = self._budget.per_window * self._interval / MUDBASE_WINDOW
        spare = per_round * (1 - LOGS_HEADROOM) - sum(self._pages.values())
        return max(0.0, spare) / max(1, len(self._selectors))

    async def _optional_logs(self, key: TargetKey, pages: int, listed_total: int | None) -> None:
        """A change-driven logs request: its executions are counted; a failure is counted and
        logged, nothing more (the stats came from the list)."""
        async with self._semaphore:
            budget = self._interval * POLL_DEADLINE_SHARE
            POLL_DEADLINE.set(asyncio.get_running_loop().time() + budget)
            before = self._executions_of(key)
            try:
                async with asyncio.timeout(budget):
                    _, executions = await self._logs(key, before, pages, listed_total)
            except PollError as err:
                self._metrics.poll_errors.labels(err.reason.value).inc()
                log.debug("logs request failed", target=str(key), reason=err.reason.value)
            except TimeoutError:
                self._metrics.poll_errors.labels(Reason.TIMEOUT.value).inc()
            else:
                if executions is not None:
                    self._state.record_executions(key, executions, replacing=before)

    def _project_failed(self, project: str, reason: Reason, detail: str) -> None:
        self._state.project_attempted(project)
        keys = self._state.keys_of(project)
        if not keys:
            self._metrics.poll_errors.labels(reason.value).inc()
            log.warning("listing failed", project=project, reason=reason.value, detail=detail)
        for key in keys:
            self._failed(key, reason, detail)

    async def poll_once(self, key: TargetKey) -> None:
        async with self._semaphore:
            started = time.monotonic()
            budget = self._interval * POLL_DEADLINE_SHARE
            POLL_DEADLINE.set(asyncio.get_running_loop().time() + budget)
            try:
                async with asyncio.timeout(budget):
                    stats, executions = await self._logs(
                        key, self._executions_of(key), self._execution_pages, None
                    )
            except PollError as err:
                self._failed(key, err.reason, err.detail)
            except TimeoutError:
                self._failed(key, Reason.TIMEOUT, "poll deadline exceeded, retries included")
            except Exception as err:  # a bug must not stop the other functions
                log.exception("unexpected error while polling", target=str(key))
                self._failed(key, Reason.INTERNAL, type(err).__name__)
            else:
                self._succeeded(key, stats, executions)
            finally:
                self._metrics.poll_duration.observe(time.monotonic() - started)

    async def _logs(
        self, key: TargetKey, totals: ExecutionTotals | None, pages: int, listed_total: int | None
    ) -> tuple[FunctionStats, ExecutionTotals | None]:
        """The stats from the logs endpoint, and `totals` advanced by the new executions on up
        to `pages` pages (one request each). The first answer of a function only places its
        execution cursor (one execution asked for)."""
        if not self._execution_metrics:
            return (await self._client.function_logs(key.project, key.function)).stats, None
        if totals is None:
            first = await self._client.function_logs(key.project, key.function)
            return first.stats, ExecutionTotals.start(
                first.executions, first.stats.total_executions
            )
        limit = page_limit(totals.expected_new(listed_total))
        first = await self._client.function_logs(key.project, key.function, limit=limit)
        new = totals.new_executions()
        page, offset = first, 0
        for fetched in range(1, pages + 1):
            if not new.add_page(page.executions, limit) or fetched == pages:
                break
            offset, limit = offset + len(page.executions), PAGE_SIZE
            try:
                async with asyncio.timeout_at(self._extra_page_deadline()):
                    page = await self._client.function_logs(
                        key.project, key.function, limit=limit, offset=offset
                    )
            except (PollError, TimeoutError) as err:  # the stats are in hand: what the pages
                log.debug("logs page failed", target=str(key), error=repr(err))  # missed is
                break  # counted as unobserved
        return first.stats, totals.advance(new.found, first.stats.total_executions)

    def _succeeded(
        self, key: TargetKey, stats: FunctionStats, executions: ExecutionTotals | None
    ) -> None:
        previous = self._state.get(key)
        self._state.record_success(key, stats, self._clock(), executions)
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
            keep_values_for=max(self._keep_values_for, 3 * self._interval),  # stretched too
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


def _fingerprint(stats: FunctionStats) -> tuple[object, ...]:
    """What tells that a function ran since the last look: its counts and last run."""
    return (stats.total_executions, stats.failed_executions, stats.last_run_timestamp)
