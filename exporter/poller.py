"""When to poll what: every function and discovered project once per interval, by the plan.

One asyncio task per listed function and per discovered project. Their first polls are spread
over the plan's spread (the time the budget needs for a round's required requests) and each
then polls exactly once per interval, so no function waits longer than an interval, start-up
included. Every request asks the request planner for its turn (`exporter.planner`); the planner
also says the interval, each poll's deadline, and how many change-driven logs requests a
discovered project may send this round. Results go into the state store.

A discovered project's change-driven logs requests wait in one queue, served by at most
`concurrency` worker tasks: memory stays bounded by the concurrency, not by how many requests a
round grants (a raised budget grants thousands).

A listing reads its first page, which tells how many there are, then the others concurrently
(the planner paces them). What the pages that answered carry is published even when others
failed or the deadline came first; the functions of the pages missing are marked down.

The poller outlives reloads, like the planner: a new configuration changes its client and
settings, and its schedule (each task's next poll) and memory (when each discovered function's
logs were last fetched, and its stats then) carry over.
"""

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from exporter.client import MudbaseClient
from exporter.config import ID_PATTERN, KEEP_VALUES_INTERVALS
from exporter.errors import PollError, Reason
from exporter.executions import FIRST_PAGE, PAGE_SIZE, ExecutionTotals, page_limit
from exporter.logs import get_logger
from exporter.planner import (
    POLL_DEADLINE,
    RefusedByPause,
    RequestKind,
    RequestPlanner,
    RequestSkipped,
)
from exporter.priority import FAILING, Fingerprint, Priority, logs_priority
from exporter.priority import fingerprint as _fingerprint
from exporter.selfmetrics import ExporterMetrics
from exporter.state import StateStore, TargetState
from exporter.supervision import Loop
from exporter.targets import FunctionInfo, FunctionSettings, ProjectSelector, Shard, TargetKey
from exporter.upstream import FunctionPage, FunctionStats, FunctionSummary

log = get_logger("exporter.poller")

MAX_LIST_PAGES = 1000  # 100,000 functions in one project: beyond that, shard


@dataclass(frozen=True)
class PollSettings:
    """What the configuration says about polling, beside the targets and the budget."""

    stale_after: float | None = None  # None: KEEP_VALUES_INTERVALS effective intervals
    max_age: float = 600.0
    logs_for_changes: bool = True
    execution_metrics: bool = True
    execution_pages: int = 1


@dataclass
class _Listing:
    """A listing's pages as they answered, and why the others did not."""

    pages: int = 1
    answered: dict[int, FunctionPage] | None = None
    failure: tuple[Reason, str] | None = None
    own_error: bool = True
    begun: float = 0.0  # loop time
    deadline: asyncio.Timeout | None = None

    @property
    def summaries(self) -> list[FunctionSummary]:
        answered = self.answered or {}
        return [s for page in sorted(answered) for s in answered[page].functions]

    @property
    def complete(self) -> bool:
        return self.answered is not None and len(self.answered) == self.pages

    def failed(self, reason: Reason, detail: str, *, own_error: bool = True) -> None:
        if self.failure is None or (own_error and not self.own_error):  # its own first
            self.failure, self.own_error = (reason, detail), own_error


@dataclass(frozen=True, order=True)
class _LogsRequest:
    """A granted change-driven logs request, waiting for a worker (failing functions' first,
    then in the order granted); its deadline counts from the grant, as a poll's does from its
    start."""

    group: int  # exporter.priority's: FAILING first
    order: int
    key: TargetKey = field(compare=False)
    pages: int = field(compare=False)
    listed_total: int | None = field(compare=False)
    deadline: float = field(compare=False)  # loop time
    seen: Fingerprint = field(compare=False)  # the listed stats it was granted for


def next_due(due: float, interval: float, now: float) -> float:
    """The tick after `due`, one interval later; ticks already past (a poll that ran long)
    are skipped rather than run late."""
    due += interval
    if due <= now:
        due += math.ceil((now - due) / interval) * interval
    return due


class Poller:
    def __init__(
        self,
        client: MudbaseClient,
        state: StateStore,
        metrics: ExporterMetrics,
        planner: RequestPlanner,
        settings: PollSettings | None = None,
        *,
        shard: Shard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._state = state
        self._metrics = metrics
        self._planner = planner
        self._settings = settings or PollSettings()
        self._clock = clock  # Unix time, for the timestamps published; durations: loop time
        self._shard = shard or Shard()
        self._tasks: dict[TargetKey, asyncio.Task[None]] = {}
        self._project_tasks: dict[str, asyncio.Task[None]] = {}
        self._selectors: dict[str, ProjectSelector] = {}
        self._seen: dict[TargetKey, Fingerprint] = {}  # listed stats the last logs answer
        # covered (or those of its first listing, before any)
        self._logs_at: dict[TargetKey, float] = {}  # loop time of the last logs request
        self._logs_in_flight: set[TargetKey] = set()  # one change-driven logs request a function
        self._logs_queue: list[_LogsRequest] = []  # a heap
        self._logs_order = itertools.count()
        self._logs_workers: set[asyncio.Task[None]] = set()
        self._failing_projects: dict[str, Reason] = {}

    def configure(self, client: MudbaseClient, settings: PollSettings) -> None:
        """A reloaded configuration: its client and settings, for the requests from now on;
        the schedule and what the poller remembers stay."""
        self._client = client
        self._settings = settings

    def apply(
        self,
        targets: Mapping[TargetKey, FunctionSettings],
        projects: Sequence[ProjectSelector] = (),
    ) -> None:
        """Poll exactly these functions and projects: start new ones, stop removed ones."""
        self._selectors = {p.project: p for p in self._shard.own_projects(projects)}
        for key in [k for k in self._seen if k.project not in self._selectors]:
            self._forget(key)
        self._state.set_targets(targets, discovered_projects=list(self._selectors))
        self._planner.set_targets(len(targets), self._selectors)
        for key in set(self._tasks) - set(targets):
            self._tasks.pop(key).cancel()
        for project in set(self._project_tasks) - set(self._selectors):
            self._project_tasks.pop(project).cancel()
        # projects first: their listings carry every discovered function's stats
        wanted: list[TargetKey | str] = [*sorted(self._selectors), *sorted(targets)]
        new = [t for t in wanted if t not in self._tasks and t not in self._project_tasks]
        spread, start = self._planner.plan.spread, asyncio.get_running_loop().time()
        for index, target in enumerate(new):
            first = start + spread * index / len(new)
            if isinstance(target, str):
                poll = partial(self.poll_project, target)
                self._project_tasks[target] = self._every_interval(poll, first, Loop.LIST, target)
            else:
                self._tasks[target] = self._every_interval(
                    partial(self.poll_once, target), first, Loop.POLL, str(target)
                )
        self._metrics.targets.set(self._state.count())

    async def stop(self) -> None:
        tasks = [
            *self._tasks.values(),
            *self._project_tasks.values(),
            *self._logs_workers,
        ]
        self._logs_queue.clear()
        self._tasks.clear()
        self._project_tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _every_interval(
        self, poll: Callable[[], Awaitable[None]], first: float, kind: Loop, target: str
    ) -> asyncio.Task[None]:
        return asyncio.create_task(
            self._run_every_interval(poll, first, kind, target), name=f"{kind} {target}"
        )

    async def _run_every_interval(
        self, poll: Callable[[], Awaitable[None]], due: float, kind: Loop, target: str
    ) -> None:
        """Run `poll` at `due` and then once per (current) interval, forever: an exception
        that escapes a poll (a bug) is logged and counted, and the next poll runs on time."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                await poll()
            except Exception as err:  # reported: one target's bug stops nothing
                self._metrics.loop_errors.caught(kind, err, target=target)
            due = next_due(due, self._planner.interval, loop.time())

    def _start_deadline(self) -> float:
        """Set this task's poll deadline; the seconds it allows."""
        allowed = self._planner.poll_deadline
        POLL_DEADLINE.set(asyncio.get_running_loop().time() + allowed)
        return allowed

    async def poll_project(self, project: str) -> None:
        """List the project (one request per 100 functions) and publish every function's stats
        from the pages that answered; fetch the logs only of functions that changed, or not
        fetched for max_age."""
        selector = self._selectors.get(project)
        if selector is None:
            return
        started = time.monotonic()
        listing = _Listing()
        try:
            await self._list(project, listing)
            if listing.answered is None:  # not even the first page
                reason, detail = listing.failure or (Reason.INTERNAL, "no page")
                self._project_failed(project, reason, detail, own_error=listing.own_error)
            else:
                self._publish(selector, listing)
        except Exception as err:  # a bug must not stop the other projects
            self._metrics.loop_errors.caught(Loop.LIST, err, target=project)
            self._project_failed(project, Reason.INTERNAL, type(err).__name__)
        finally:
            self._metrics.poll_duration.observe(time.monotonic() - started)

    async def _list(self, project: str, listing: _Listing) -> None:
        """Read the listing's pages into `listing`: the first, then the others at once (each
        waits for its turn); a page's failure or the deadline ends only what is missing."""
        listing.begun = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self._start_deadline()) as listing.deadline:
                first = await self._client.function_page(project, 1)
                listing.pages = min(first.total_pages, MAX_LIST_PAGES)
                listing.answered = {1: first}
                # the listing's size is known now: the planner replans at once, and a stretch
                # stretches this listing's deadline
                self._planner.project_listed(project, listing.pages)
                self._extend_deadline(listing)
                pages = range(2, listing.pages + 1)
                await asyncio.gather(*(self._page(project, n, listing) for n in pages))
        except RefusedByPause as err:
            listing.failed(err.reason, err.detail, own_error=False)
        except PollError as err:
            listing.failed(err.reason, err.detail)
        except TimeoutError:
            listing.failed(Reason.TIMEOUT, "listing exceeded its deadline")

    async def _page(self, project: str, page: int, listing: _Listing) -> None:
        try:
            answer = await self._client.function_page(project, page)
        except RefusedByPause as err:
            listing.failed(err.reason, err.detail, own_error=False)
        except PollError as err:
            listing.failed(err.reason, err.detail)
        else:
            assert listing.answered is not None
            listing.answered[page] = answer
            self._extend_deadline(listing)  # its latency may have stretched the interval

    def _extend_deadline(self, listing: _Listing) -> None:
        """A listing found bigger or slower than planned gets the deadline of the stretched
        interval (pages already waiting for their turn keep the deadline they were queued
        with: it orders them, and a 429 pause that outlasts it refuses them)."""
        deadline = listing.deadline
        current = deadline.when() if deadline is not None else None
        extended = listing.begun + self._planner.poll_deadline
        if deadline is not None and current is not None and extended > current:
            deadline.reschedule(extended)
            POLL_DEADLINE.set(extended)

    def _publish(self, selector: ProjectSelector, listing: _Listing) -> None:
        """Every function the answered pages carry, published; with pages missing, the
        project's other known functions are down (their stats are not known this round) and
        none of them counts as gone."""
        project = selector.project
        found: dict[TargetKey, FunctionSummary] = {}
        for summary in listing.summaries:
            key = TargetKey(project, summary.id)
            if not ID_PATTERN.match(summary.id):
                log.debug("ignoring a function ID that is not a plain ID", target=str(key))
            elif selector.selects(summary.id, summary.name, summary.active):
                found[key] = summary
        gone = self._state.sync_project(
            project,
            {
                key: (selector.settings, FunctionInfo(s.name, s.trigger_type, s.active))
                for key, s in found.items()
            },
            complete=listing.complete,
        )
        for key in gone:
            self._forget(key)
        self._metrics.targets.set(self._state.count())
        now = self._clock()
        for key, summary in found.items():
            self._state.record_success(key, summary.stats, now, self._listed_totals(key, summary))
        if listing.complete:
            self._planner.project_listed(project, functions=len(found))
            self._project_recovered(project)
        else:
            self._listing_incomplete(project, listing, found)
        self._fetch_changed_logs(project, found)

    def _listing_incomplete(
        self, project: str, listing: _Listing, found: Mapping[TargetKey, FunctionSummary]
    ) -> None:
        reason, detail = listing.failure or (Reason.INTERNAL, "pages missing")
        self._metrics.poll_errors.labels(reason.value).inc()
        missing = [k for k in self._state.keys_of(project) if k not in found]
        answered = len(listing.answered or {})
        previous = self._failing_projects.get(project)
        self._failing_projects[project] = reason
        level = log.warning if previous != reason else log.debug
        level(
            "listing incomplete: the functions of the pages that answered are published",
            project=project,
            pages_answered=f"{answered}/{listing.pages}",
            reason=reason.value,
            detail=detail,
            functions_down=len(missing),
        )
        for key in missing:
            self._record_failure(key, reason, detail, listing.own_error)

    def _forget(self, key: TargetKey) -> None:
        self._seen.pop(key, None)
        self._logs_at.pop(key, None)

    def _listed_totals(self, key: TargetKey, summary: FunctionSummary) -> ExecutionTotals | None:
        """A discovered function's executions that its logs answers miss are counted from its
        listings as unobserved, listing by listing (`ExecutionTotals.listed`), so a function
        fetched rarely or never shows as a coverage gap when it runs, not hours later."""
        settings = self._settings
        if not (settings.execution_metrics and settings.logs_for_changes) or (
            key in self._logs_in_flight
        ):
            return None
        totals = self._executions_of(key)
        total = summary.stats.total_executions
        if totals is None:
            return ExecutionTotals.watching(total)
        return totals.listed(total)

    def _fetch_changed_logs(self, project: str, found: Mapping[TargetKey, FunctionSummary]) -> None:
        """Logs only where the listed stats moved (or max_age passed), failures first (see
        `exporter.priority`), as many as the planner allows this project this round. The
        stats themselves come from the list; a logs request is optional and never marks a
        function down."""
        if not self._settings.logs_for_changes:
            return
        now = asyncio.get_running_loop().time()
        priorities = self._due_for_logs(found, now)
        due = sorted(priorities, key=priorities.__getitem__)
        failing = sum(1 for key in due if priorities[key][0] == FAILING)
        pages = [self._pages_for(key, found[key].stats.total_executions) for key in due]
        granted = self._planner.logs_allowance(project, pages, failing=failing, now=now)
        deadline = now + self._planner.poll_deadline
        for key, count in zip(due[:granted], pages, strict=False):
            stats = found[key].stats
            self._logs_at[key] = now
            self._logs_in_flight.add(key)
            request = _LogsRequest(
                priorities[key][0],
                next(self._logs_order),
                key,
                count,
                stats.total_executions,
                deadline,
                _fingerprint(stats),
            )
            heapq.heappush(self._logs_queue, request)
        self._start_logs_workers()

    def _due_for_logs(
        self, found: Mapping[TargetKey, FunctionSummary], now: float
    ) -> dict[TargetKey, Priority]:
        """The functions whose logs are due (their listed stats moved since the last logs
        answer, or max_age passed), each with its place in line. A function first listed is
        its own baseline from then on."""
        for key, summary in found.items():
            self._seen.setdefault(key, _fingerprint(summary.stats))
        return {
            key: logs_priority(
                self._seen.get(key), summary.stats, self._logs_at.get(key, -math.inf)
            )
            for key, summary in found.items()
            if key not in self._logs_in_flight
            and (
                self._seen.get(key) != _fingerprint(summary.stats)
                or now - self._logs_at.get(key, -math.inf) >= self._settings.max_age
            )
        }

    def _start_logs_workers(self) -> None:
        """Workers for the queued logs requests, up to the concurrency (a request waits in the
        queue as a few bytes, not as a task holding its request's objects)."""
        wanted = min(len(self._logs_queue), self._planner.plan.conditions.concurrency)
        while len(self._logs_workers) < wanted:
            worker = asyncio.create_task(self._logs_worker(), name="logs worker")
            self._logs_workers.add(worker)
            worker.add_done_callback(self._logs_workers.discard)

    async def _logs_worker(self) -> None:
        while self._logs_queue:
            request = heapq.heappop(self._logs_queue)
            try:
                await self._optional_logs(request)
            finally:
                self._logs_in_flight.discard(request.key)

    def _extra_page_deadline(self) -> float:
        """Older logs pages stop a tenth of the interval before the poll's own deadline, so
        that a slow one ends the paging, not the poll (whose stats are already in hand)."""
        poll_deadline = POLL_DEADLINE.get()
        now = asyncio.get_running_loop().time()
        if poll_deadline is None:
            return now + self._planner.poll_deadline
        return poll_deadline - self._planner.deadline_margin

    def _executions_of(self, key: TargetKey) -> ExecutionTotals | None:
        state = self._state.get(key)
        return state.executions if state is not None else None

    def _pages_for(self, key: TargetKey, listed_total: int | None) -> int:
        """Logs pages worth fetching for a function, known from its listed total: enough for
        its new executions, at most the configured pages per poll."""
        totals = self._executions_of(key)
        if not self._settings.execution_metrics or totals is None or not totals.placed:
            return 1
        expected = totals.expected_new(listed_total) or 0
        return max(1, min(self._settings.execution_pages, math.ceil(expected / PAGE_SIZE)))

    async def _optional_logs(self, request: _LogsRequest) -> None:
        """A change-driven logs request: its executions are counted; a failure is counted and
        logged, nothing more (the stats came from the list). Past its deadline before its
        turn, the planner skips it (and counts it)."""
        key, pages, listed_total = request.key, request.pages, request.listed_total
        before = self._executions_of(key)
        POLL_DEADLINE.set(request.deadline)
        # a request that waited in the queue past its turn's deadline (the poll deadline less
        # the margin) is skipped by the planner; this cut-off must not come first
        now = asyncio.get_running_loop().time()
        cut_off = max(request.deadline, now + self._planner.deadline_margin)
        try:
            async with asyncio.timeout_at(cut_off):
                _, executions = await self._logs(key, before, pages, listed_total, RequestKind.LOGS)
            if executions is not None:
                self._state.record_executions(key, executions, replacing=before)
            if key in self._seen:  # not forgotten meanwhile
                self._seen[key] = request.seen  # answered: its failures are no longer new
        except RequestSkipped:
            log.debug("logs request skipped: no budget before its deadline", target=str(key))
        except PollError as err:
            self._metrics.poll_errors.labels(err.reason.value).inc()
            log.debug("logs request failed", target=str(key), reason=err.reason.value)
            if err.reason is Reason.NOT_FOUND and self._state.remove_discovered(key):
                self._forget(key)
                log.info("discovered function removed: its logs are not found", target=str(key))
        except TimeoutError:
            self._metrics.poll_errors.labels(Reason.TIMEOUT.value).inc()
        except Exception as err:  # a bug: reported, the next round tries again
            self._metrics.loop_errors.caught(Loop.LOGS, err, target=str(key))

    def _project_failed(
        self, project: str, reason: Reason, detail: str, *, own_error: bool = True
    ) -> None:
        """A failed listing: one error and one log line, every known function of it down (with
        the listing's error as theirs, unless it was refused by a shared 429 pause)."""
        self._state.project_attempted(project)
        self._metrics.poll_errors.labels(reason.value).inc()
        previous = self._failing_projects.get(project)
        self._failing_projects[project] = reason
        keys = self._state.keys_of(project)
        if previous is None:
            log.warning(
                "listing failed",
                project=project,
                reason=reason.value,
                detail=detail,
                functions_down=len(keys),
            )
        else:
            log.debug("listing still failing", project=project, reason=reason.value)
        for key in keys:
            self._record_failure(key, reason, detail, own_error)

    def _project_recovered(self, project: str) -> None:
        if self._failing_projects.pop(project, None) is not None:
            log.info("listing recovered", project=project)

    async def poll_once(self, key: TargetKey) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._start_deadline()):
                stats, executions = await self._logs(
                    key,
                    self._executions_of(key),
                    self._settings.execution_pages,
                    None,
                    RequestKind.POLL,
                )
        except RefusedByPause as err:
            self._failed(key, err.reason, err.detail, own_error=False)
        except PollError as err:
            self._failed(key, err.reason, err.detail)
        except TimeoutError:
            self._failed(key, Reason.TIMEOUT, "poll deadline exceeded, retries included")
        except Exception as err:  # a bug must not stop the other functions
            self._metrics.loop_errors.caught(Loop.POLL, err, target=str(key))
            self._failed(key, Reason.INTERNAL, type(err).__name__)
        else:
            self._succeeded(key, stats, executions)
        finally:
            self._metrics.poll_duration.observe(time.monotonic() - started)

    async def _logs(
        self,
        key: TargetKey,
        totals: ExecutionTotals | None,
        pages: int,
        listed_total: int | None,
        kind: RequestKind,
    ) -> tuple[FunctionStats, ExecutionTotals | None]:
        """The stats from the logs endpoint, and `totals` advanced by the new executions on up
        to `pages` pages (one request each). The first answer of a function only places its
        execution cursor (one execution asked for)."""
        fetch = partial(self._client.function_logs, key.project, key.function, kind=kind)
        if not self._settings.execution_metrics:
            return (await fetch()).stats, None
        if totals is None or not totals.placed:
            first = await fetch(limit=FIRST_PAGE)
            placed = (totals or ExecutionTotals(placed=False)).place(
                first.executions, first.stats.total_executions
            )
            return first.stats, placed
        limit = page_limit(totals.expected_new(listed_total))
        first = await fetch(limit=limit)
        new = totals.new_executions()
        page, offset = first, 0
        for fetched in range(1, pages + 1):
            if not new.add_page(page.executions, limit) or fetched == pages:
                break
            offset, limit = offset + len(page.executions), PAGE_SIZE
            try:
                async with asyncio.timeout_at(self._extra_page_deadline()):
                    page = await fetch(limit=limit, offset=offset)
            except (PollError, TimeoutError, RequestSkipped) as err:  # the stats are in hand:
                log.debug("logs page failed", target=str(key), error=repr(err))  # what the
                break  # pages missed is counted as unobserved
        total = first.stats.total_executions
        return first.stats, totals.advance(new.found, total, fetched=first.executions)

    def _succeeded(
        self, key: TargetKey, stats: FunctionStats, executions: ExecutionTotals | None
    ) -> None:
        previous = self._state.get(key)
        self._state.record_success(key, stats, self._clock(), executions)
        if previous is not None and previous.up is False:
            log.info("poll recovered", target=str(key), failures=previous.consecutive_failures)
        else:
            log.debug("poll succeeded", target=str(key))

    def _record_failure(
        self, key: TargetKey, reason: Reason, detail: str, own_error: bool
    ) -> TargetState | None:
        return self._state.record_failure(
            key,
            reason.value,
            self._clock(),
            keep_values_for=self._keep_values_for(),
            drop_values=reason is Reason.NOT_FOUND,
            detail=detail,
            own_error=own_error,
        )

    def _keep_values_for(self) -> float:
        """How long a failing function's values stay: `stale_after` exactly, or by default
        KEEP_VALUES_INTERVALS of the effective (perhaps stretched) interval."""
        stale_after = self._settings.stale_after
        if stale_after is not None:
            return stale_after
        return KEEP_VALUES_INTERVALS * self._planner.interval

    def _failed(
        self, key: TargetKey, reason: Reason, detail: str, *, own_error: bool = True
    ) -> None:
        """A failed poll: counted, logged, the function down; its last error is this one unless
        the poll was refused by a shared 429 pause (`own_error=False`)."""
        self._metrics.poll_errors.labels(reason.value).inc()
        previous = self._record_failure(key, reason, detail, own_error)
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
