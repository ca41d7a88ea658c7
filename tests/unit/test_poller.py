"""The poller: even spreading, the concurrency bound, the poll cut-off, failure isolation."""

import asyncio
import dataclasses
import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec

import pytest
from prometheus_client import CollectorRegistry

from exporter.client import MudbaseClient
from exporter.errors import PollError, Reason
from exporter.planner import RequestKind, RequestPlanner
from exporter.poller import Poller, PollSettings, next_due
from exporter.selfmetrics import ExporterMetrics
from exporter.state import StateStore
from exporter.targets import FunctionSettings, ProjectSelector, Shard, TargetKey
from exporter.upstream import Execution, FunctionPage, FunctionStats, FunctionSummary, LogsPage

POLL = RequestKind.POLL
P = ParamSpec("P")
KEYS = [TargetKey("p", f"f{i}") for i in range(10)]
SETTINGS = dict.fromkeys(KEYS, FunctionSettings(0.99))


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class FakeClient:
    """Stands in for MudbaseClient: answers, fails or hangs per function; counts concurrency.
    Like the real client, it asks the planner for each request's turn."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = asyncio.Event()
        self.behaviour: dict[str, str] = {}
        self.planner: RequestPlanner | None = None

    async def function_logs(
        self,
        project: str,
        function: str,
        *,
        limit: int = 1,
        offset: int = 0,
        kind: RequestKind = RequestKind.POLL,
    ) -> LogsPage:
        assert self.planner is not None
        async with self.planner.turn(kind):
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return await self._answer(function)
            finally:
                self.in_flight -= 1

    async def _answer(self, function: str) -> LogsPage:
        behaviour = self.behaviour.get(function, "wait")
        if behaviour == "hang":
            await asyncio.Event().wait()
        if behaviour == "bug":
            raise ValueError("a bug")
        if behaviour == "forbidden":
            raise PollError(Reason.FORBIDDEN, "HTTP 403")
        await self.release.wait()
        return LogsPage(FunctionStats(total_executions=1))


def poller(client: object, state: StateStore, interval: float = 60.0, **options: Any) -> Poller:
    """A poller over a fake client; `options` are PollSettings' fields (`stale_after` 180 s
    unless given), Poller's keyword arguments, and `budget` (requests per 15 minutes) and
    `concurrency` those of its planner."""
    fake: MudbaseClient = client  # type: ignore[assignment]
    metrics = options.pop("metrics", None) or ExporterMetrics(CollectorRegistry())
    planner = RequestPlanner(
        options.pop("budget", 100_000),
        interval,
        options.pop("concurrency", 3),
        metrics,
        pages_per_poll=options.get("execution_pages", 1),
    )
    if hasattr(client, "planner"):
        client.planner = planner
    fields = {f.name for f in dataclasses.fields(PollSettings)}
    settings = PollSettings(
        **{"stale_after": 180.0} | {k: options.pop(k) for k in list(options) if k in fields}
    )
    return Poller(fake, state, metrics, planner, settings, **options)


def test_each_poll_comes_one_interval_after_the_last_and_missed_ticks_are_skipped() -> None:
    assert next_due(15.0, 60, now=15.5) == 75.0
    assert next_due(75.0, 60, now=75.2) == 135.0
    assert next_due(75.0, 60, now=200.0) == 255.0  # ticks at 135 and 195 missed: not run late
    assert next_due(75.0, 120, now=76.0) == 195.0  # a stretched interval counts from the last


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_first_polls_are_spread_over_the_plan_and_then_come_every_interval() -> None:
    client, state = FakeClient(), StateStore()
    client.release.set()
    loop = asyncio.get_running_loop()
    polled: dict[TargetKey, list[float]] = {}
    p = poller(client, state, interval=60)
    original = p.poll_once

    async def noting(key: TargetKey) -> None:
        polled.setdefault(key, []).append(loop.time())
        await original(key)

    p.poll_once = noting  # type: ignore[method-assign]
    started = loop.time()
    p.apply(SETTINGS)  # ten functions: little to pay, so spread over the first ten seconds
    await asyncio.sleep(150)
    await p.stop()
    firsts = sorted(times[0] - started for times in polled.values())
    assert firsts == pytest.approx([float(i) for i in range(10)])
    for times in polled.values():
        assert [b - a for a, b in itertools.pairwise(times)] == [60.0, 60.0]


@pytest.mark.asyncio
async def test_at_most_concurrency_polls_run_at_once() -> None:
    client, state = FakeClient(), StateStore()
    p = poller(client, state, concurrency=3)
    state.set_targets(SETTINGS)
    polls = asyncio.gather(*(p.poll_once(key) for key in KEYS))
    for _ in range(20):
        await asyncio.sleep(0)
    assert client.max_in_flight == 3
    client.release.set()
    await polls
    assert all(s.up for s in state.snapshot().values())


@pytest.mark.asyncio
async def test_a_hanging_poll_is_cut_off_inside_the_interval() -> None:
    client, state = FakeClient(), StateStore()
    client.behaviour["f0"] = "hang"
    p = poller(client, state, interval=0.05)
    state.set_targets(SETTINGS)
    await asyncio.wait_for(p.poll_once(KEYS[0]), timeout=5)
    assert state.snapshot()[KEYS[0]].last_error_reason == "timeout"


@pytest.mark.asyncio
async def test_a_bug_or_an_error_fails_only_its_own_function() -> None:
    client, state = FakeClient(), StateStore()
    client.behaviour.update(f0="bug", f1="forbidden")
    client.release.set()
    p = poller(client, state)
    state.set_targets(SETTINGS)
    await asyncio.gather(*(p.poll_once(key) for key in KEYS))
    snapshot = state.snapshot()
    assert snapshot[KEYS[0]].last_error_reason == "internal"
    assert snapshot[KEYS[1]].last_error_reason == "forbidden"
    assert all(snapshot[k].up for k in KEYS[2:])


@pytest.mark.asyncio
async def test_apply_starts_new_and_stops_removed_pollers() -> None:
    client, state = FakeClient(), StateStore()
    client.release.set()
    p = poller(client, state, interval=60)
    p.apply(SETTINGS)
    p.apply({KEYS[0]: SETTINGS[KEYS[0]]})
    assert list(state.snapshot()) == [KEYS[0]]
    await p.stop()


class FunctionLog:
    """One function's executions, newest first, served with offset paging like Mudbase's.

    `arrive_between_pages` executions are added after each page is served, so the next page
    shifts (the drift the cursor must absorb)."""

    def __init__(self) -> None:
        self.executions: list[Execution] = []
        self.requests: list[tuple[int, int]] = []
        self.arrive_between_pages = 0

    def run(self, count: int, success: bool = True, error: str | None = None) -> None:
        for _ in range(count):
            serial = len(self.executions)
            execution = Execution(
                f"e{serial}", moment(1000 + serial), 0.2, success, "http", "trigger", error
            )
            self.executions.insert(0, execution)

    async def function_logs(
        self,
        project: str,
        function: str,
        *,
        limit: int = 1,
        offset: int = 0,
        kind: RequestKind = RequestKind.POLL,
    ) -> LogsPage:
        self.requests.append((limit, offset))
        page = tuple(self.executions[offset : offset + limit])
        stats = FunctionStats(total_executions=len(self.executions))
        self.run(self.arrive_between_pages)
        return LogsPage(stats, page)


def observed(state: StateStore) -> tuple[int, int]:
    totals = state.snapshot()[KEYS[0]].executions
    assert totals is not None
    return sum(totals.counts.values()), totals.unobserved


@pytest.mark.asyncio
async def test_the_first_answer_places_the_cursor_and_later_ones_count_new_executions() -> None:
    log, state = FunctionLog(), StateStore()
    log.run(30)
    p = poller(log, state)
    state.set_targets({KEYS[0]: SETTINGS[KEYS[0]]})
    await p.poll_once(KEYS[0])
    assert observed(state) == (0, 0)  # history before the exporter watched is not counted
    log.run(4, success=False)
    log.run(3)
    await p.poll_once(KEYS[0])
    totals = state.snapshot()[KEYS[0]].executions
    assert totals is not None
    assert dict(totals.counts) == {
        ("failure", "http", "trigger"): 4,
        ("success", "http", "trigger"): 3,
    }
    assert totals.buckets[5] == 7  # 0.2 s: the 0.25 s bucket (the sixth)
    # a full page to place the cursor (its newest failure is used), and while the pace is unknown
    assert log.requests == [(100, 0), (100, 0)]
    await p.poll_once(KEYS[0])  # nothing new: nothing counted twice
    assert observed(state) == (7, 0)


@pytest.mark.asyncio
async def test_the_first_answer_says_why_the_function_fails_without_counting() -> None:
    log, state = FunctionLog(), StateStore()
    log.run(3, success=False, error="Error: connect ECONNREFUSED 10.0.0.7:5432")
    log.run(1, success=False, error="Timeout after 30000 ms\n    at handler (index.js:12:3)")
    log.run(2)
    p = poller(log, state)
    state.set_targets({KEYS[0]: SETTINGS[KEYS[0]]})
    await p.poll_once(KEYS[0])
    totals = state.snapshot()[KEYS[0]].executions
    assert totals is not None
    latest = totals.failures.latest
    assert latest is not None
    assert (latest.error_class, latest.trigger_type, latest.at) == (
        "Timeout after <n> ms",
        "http",
        moment(1003).timestamp(),
    )
    # both classes exist from the first answer, at 0: increase() sees their first failure
    assert dict(totals.failures.by_class) == {
        "Error: connect ECONNREFUSED <n>:<n>": 0,
        "Timeout after <n> ms": 0,
    }
    assert observed(state) == (0, 0)


@pytest.mark.asyncio
async def test_more_new_executions_than_one_page_are_counted_as_unobserved() -> None:
    log, state = FunctionLog(), StateStore()
    p = poller(log, state)
    state.set_targets({KEYS[0]: SETTINGS[KEYS[0]]})
    await p.poll_once(KEYS[0])
    await p.poll_once(KEYS[0])  # an idle poll: the pace is known (0)
    log.run(150)
    await p.poll_once(KEYS[0])
    assert observed(state) == (10, 140)  # a page of 10 (the function was idle), one page a poll
    log.run(150)
    await p.poll_once(KEYS[0])
    assert observed(state) == (110, 190)  # the page grows to 100 with the function's pace
    assert log.requests[-1] == (100, 0)


@pytest.mark.asyncio
async def test_paging_through_shifting_pages_counts_every_execution_once() -> None:
    log, state = FunctionLog(), StateStore()
    p = poller(log, state, execution_pages=5)
    state.set_targets({KEYS[0]: SETTINGS[KEYS[0]]})
    await p.poll_once(KEYS[0])
    await p.poll_once(KEYS[0])  # an idle poll: the pace is known (0)
    log.requests.clear()
    log.run(250)
    log.arrive_between_pages = 7  # every page request, 7 more executions push the list down
    await p.poll_once(KEYS[0])
    log.arrive_between_pages = 0
    counted, unobserved = observed(state)
    assert counted + unobserved == 250  # the stats said 250 new: each counted once or missed
    assert counted == 250
    assert [offset for _, offset in log.requests] == [0, 10, 110, 210]
    await p.poll_once(KEYS[0])  # the executions that arrived during paging come next
    assert observed(state) == (250 + 4 * 7, 0)


@pytest.mark.asyncio
async def test_without_execution_metrics_one_execution_is_asked_for_and_none_kept() -> None:
    log, state = FunctionLog(), StateStore()
    p = poller(log, state, execution_metrics=False)
    state.set_targets({KEYS[0]: SETTINGS[KEYS[0]]})
    log.run(5)
    await p.poll_once(KEYS[0])
    log.run(5)
    await p.poll_once(KEYS[0])
    assert log.requests == [(1, 0), (1, 0)]
    assert state.snapshot()[KEYS[0]].executions is None


class Lister:
    """A project of `functions` functions, listed 100 a page, each page asking the planner
    for its turn as the real client does."""

    def __init__(self, functions: int) -> None:
        self.functions = functions
        self.fail_from_page = math.inf
        self.absent: set[str] = set()  # left out of the listing (paging drift, a flap)
        self.logs_answer: Exception | None = None
        self.planner: RequestPlanner | None = None
        self.logs_requests = 0

    async def function_logs(
        self, project: str, function: str, *, kind: RequestKind = POLL, **_: int
    ) -> LogsPage:
        assert self.planner is not None
        async with self.planner.turn(kind):
            self.logs_requests += 1
            if self.logs_answer is not None:
                raise self.logs_answer
            return LogsPage(FunctionStats(total_executions=1))

    async def function_page(self, project: str, page: int) -> FunctionPage:
        assert self.planner is not None
        async with self.planner.turn(RequestKind.LIST):
            if page >= self.fail_from_page:
                raise PollError(Reason.SERVER_ERROR, "HTTP 503")
            first = (page - 1) * 100
            ids = range(first, min(first + 100, self.functions))
            summaries = [
                FunctionSummary(f"f{i}", f"f{i}", True, "http", FunctionStats())
                for i in ids
                if f"f{i}" not in self.absent
            ]
            return FunctionPage(summaries, math.ceil(self.functions / 100))


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_listing_found_bigger_than_planned_gets_the_stretched_deadline() -> None:
    lister, state = Lister(700), StateStore()
    # 0.1 request a second, two at once: the 7 pages take 50 s, past the 48 s deadline of the
    # planned 60 s interval, but within that of the 100 s the first page's size stretches to
    p = poller(lister, state, budget=92, logs_for_changes=False)
    p.apply({}, [ProjectSelector("big", FunctionSettings(0.99))])  # its first listing at once
    await asyncio.sleep(90)
    assert p._planner.interval == pytest.approx(100)
    assert len(state.snapshot()) == 700
    assert all(target.up for target in state.snapshot().values())
    await p.stop()


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_listings_that_outgrow_the_budget_stretch_the_interval_and_shrink_back() -> None:
    lister, state = Lister(700), StateStore()
    metrics = ExporterMetrics(CollectorRegistry())
    p = poller(lister, state, metrics=metrics, budget=92, logs_for_changes=False)
    p.apply({}, [ProjectSelector("big", FunctionSettings(0.99))])  # listed at 0 s
    await asyncio.sleep(90)
    # 7 pages at 0.1 a second take 70 s: planned to end within 70% of the interval at 100 s
    assert metrics.poll_interval._value.get() == pytest.approx(100)
    lister.functions = 300
    await asyncio.sleep(60)  # listed again at 100 s: three pages fit the configured 60 s
    assert metrics.poll_interval._value.get() == 60
    lister.functions, lister.fail_from_page = 700, 2  # too big to finish: its first page tells
    await asyncio.sleep(60)  # listed at 160 s
    assert metrics.poll_interval._value.get() == pytest.approx(100)
    await p.stop()


@pytest.mark.asyncio
async def test_a_replica_lists_only_the_discovered_projects_its_shard_owns() -> None:
    projects = [ProjectSelector(f"proj{i}", FunctionSettings(0.99)) for i in range(20)]
    listed: list[set[str]] = []
    for index in range(2):
        lister, state = Lister(150), StateStore()
        p = poller(lister, state, interval=3600, shard=Shard(index, 2), logs_for_changes=False)
        p.apply({}, projects)
        for project in projects:
            await p.poll_project(project.project)
        listed.append({key.project for key in state.snapshot()})
        assert len(state.snapshot()) == 150 * len(listed[-1])  # owned projects come whole
        await p.stop()
    assert listed[0] | listed[1] == {p.project for p in projects}
    assert not listed[0] & listed[1]


@pytest.mark.asyncio
async def test_a_hanging_older_page_ends_the_paging_not_the_poll() -> None:
    log, state = FunctionLog(), StateStore()
    p = poller(log, state, interval=0.5, execution_pages=3)
    state.set_targets({KEYS[0]: SETTINGS[KEYS[0]]})
    await p.poll_once(KEYS[0])
    await p.poll_once(KEYS[0])  # an idle poll: the pace is known (0)
    log.run(150)
    served = log.function_logs

    async def hang_after_the_first_page(
        project: str, function: str, *, limit: int = 1, offset: int = 0, kind: RequestKind = POLL
    ) -> LogsPage:
        if offset:
            await asyncio.Event().wait()
        return await served(project, function, limit=limit, offset=offset, kind=kind)

    log.function_logs = hang_after_the_first_page  # type: ignore[method-assign]
    await p.poll_once(KEYS[0])
    target = state.snapshot()[KEYS[0]]
    assert target.up  # the stats of the first page are published
    assert observed(state) == (10, 140)  # what the hanging page held is unobserved


@pytest.mark.asyncio
async def test_a_discovered_function_leaves_after_two_listings_without_it_or_a_404() -> None:
    lister, state = Lister(3), StateStore()
    p = poller(lister, state, interval=3600, logs_for_changes=False)
    p.apply({}, [ProjectSelector("proj", FunctionSettings(0.99))])
    await p.stop()  # no polls on their own: this test lists when it says
    await p.poll_project("proj")
    f1 = TargetKey("proj", "f1")
    kept = state.snapshot()[f1]
    lister.absent = {"f1"}
    await p.poll_project("proj")
    assert state.snapshot()[f1] == kept  # missing once (a drifting page): kept as it was
    lister.absent = set()
    await p.poll_project("proj")
    lister.absent = {"f1"}
    await p.poll_project("proj")
    assert f1 in state.snapshot()  # the count starts again after it came back
    await p.poll_project("proj")
    assert f1 not in state.snapshot()  # missing from two complete listings in a row: gone
    lister.fail_from_page = 1
    lister.absent = {"f2"}
    await p.poll_project("proj")
    await p.poll_project("proj")
    assert TargetKey("proj", "f2") in state.snapshot()  # failed listings say nothing
    await p.stop()


@pytest.mark.asyncio
async def test_a_discovered_function_whose_logs_are_not_found_leaves_at_once() -> None:
    lister, state = Lister(2), StateStore()
    lister.logs_answer = PollError(Reason.NOT_FOUND, "HTTP 404")
    p = poller(lister, state, interval=3600)
    p.apply({}, [ProjectSelector("proj", FunctionSettings(0.99))])
    await p.stop()  # no polls on their own: this test lists when it says
    await p.poll_project("proj")  # both changed (first seen): their logs are asked for
    await asyncio.gather(*p._logs_workers)
    assert state.snapshot() == {}
    await p.stop()


def failing_once(method: Callable[P, None], bug: Exception) -> Callable[P, None]:
    """`method`, raising `bug` the first time it is called (a bug injected into a loop)."""
    bugs = [bug]

    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        if bugs:
            raise bugs.pop()
        method(*args, **kwargs)

    return call


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_bug_outside_a_poll_is_counted_and_the_next_poll_runs_on_time() -> None:
    client, state = FakeClient(), StateStore()
    client.release.set()
    metrics = ExporterMetrics(CollectorRegistry())
    p = poller(client, state, interval=60, metrics=metrics)
    p._succeeded = failing_once(p._succeeded, ValueError("a bug in publishing"))  # type: ignore[method-assign]
    p.apply({KEYS[0]: SETTINGS[KEYS[0]]})
    await asyncio.sleep(30)
    assert state.snapshot()[KEYS[0]].up is None  # the first poll's result was lost to the bug
    assert metrics.loop_errors._counter.labels("poll")._value.get() == 1
    await asyncio.sleep(60)
    assert state.snapshot()[KEYS[0]].up  # the loop went on: the next poll, on time
    await p.stop()


@pytest.mark.asyncio
async def test_a_bug_in_a_listing_or_a_logs_request_is_counted_and_the_next_round_works() -> None:
    lister, state = Lister(2), StateStore()
    metrics = ExporterMetrics(CollectorRegistry())
    p = poller(lister, state, interval=3600, metrics=metrics)
    p.apply({}, [ProjectSelector("proj", FunctionSettings(0.99))])
    await p.stop()  # no polls on their own: this test lists when it says
    p._publish = failing_once(p._publish, KeyError("a bug in publishing"))  # type: ignore[method-assign]
    lister.logs_answer = ValueError("a bug in parsing")
    await p.poll_project("proj")
    assert metrics.loop_errors._counter.labels("list")._value.get() == 1
    assert state.snapshot() == {}  # nothing published from the failed listing
    await p.poll_project("proj")
    await asyncio.gather(*p._logs_workers)
    assert len(state.snapshot()) == 2  # the next listing works
    assert metrics.loop_errors._counter.labels("logs")._value.get() == 2  # one per function


@pytest.mark.asyncio
async def test_polls_refused_by_a_shared_429_pause_keep_each_functions_own_last_error() -> None:
    """Mudbase limits per client IP, so a 429 pauses every request; a poll the pause refuses
    is down like any failed poll, but its function's last error stays its own."""
    lister, state = Lister(2), StateStore()
    metrics = ExporterMetrics(CollectorRegistry())
    p = poller(lister, state, metrics=metrics, interval=60, logs_for_changes=False)
    listed = TargetKey("own", "f0")
    p.apply({listed: FunctionSettings(0.99)}, [ProjectSelector("proj", FunctionSettings(0.99))])
    await p.stop()  # no polls on their own: this test polls when it says
    await p.poll_project("proj")
    lister.fail_from_page = 1  # the listing fails on its own: HTTP 503
    await p.poll_project("proj")
    lister.logs_answer = PollError(Reason.FORBIDDEN, "HTTP 403")
    await p.poll_once(listed)

    def last_errors() -> dict[TargetKey, tuple[str | None, str | None, float | None]]:
        return {
            key: (target.last_error_reason, target.last_error_detail, target.last_error_time)
            for key, target in state.snapshot().items()
        }

    own = last_errors()
    assert [error[:2] for error in own.values()] == [
        ("forbidden", "HTTP 403"),
        ("server_error", "HTTP 503"),
        ("server_error", "HTTP 503"),
    ]
    assert lister.planner is not None
    lister.planner.rate_limited(120.0)  # another request's 429: past each poll's deadline
    await p.poll_once(listed)
    await p.poll_project("proj")
    assert last_errors() == own
    assert [(t.up, t.consecutive_failures) for t in state.snapshot().values()] == [(False, 2)] * 3
    assert metrics.poll_errors.labels("rate_limited")._value.get() == 2  # counted as before


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_stale_after_is_honoured_exactly_even_below_three_intervals() -> None:
    """`stale_after: 10s` with a 10 s interval: the values go 10 s after the last success,
    not 30 s (three intervals)."""
    client, state = FakeClient(), StateStore()
    client.release.set()
    loop = asyncio.get_running_loop()
    p = poller(client, state, interval=10, stale_after=10, clock=loop.time)
    p.apply({KEYS[0]: SETTINGS[KEYS[0]]})
    await asyncio.sleep(5)  # polled at 0 s
    client.behaviour[KEYS[0].function] = "forbidden"
    await asyncio.sleep(10)  # failed at 10 s: 10 s after the last success, the values stay
    assert state.snapshot()[KEYS[0]].stats is not None
    await asyncio.sleep(10)  # failed at 20 s: past stale_after
    assert state.snapshot()[KEYS[0]].up is False
    assert state.snapshot()[KEYS[0]].stats is None
    await p.stop()


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_max_age_counts_on_the_event_loops_monotonic_clock() -> None:
    """Functions whose listed stats never change get a logs request again after `max_age`
    of the event loop's clock: the wall clock (which stands still here, as it would after a
    step backwards) plays no part."""
    lister, state = Lister(2), StateStore()
    p = poller(lister, state, interval=60, max_age=120)
    p.apply({}, [ProjectSelector("proj", FunctionSettings(0.99))])
    await asyncio.sleep(150)  # listed at 0 s (first seen), 60 s and 120 s (max_age passed)
    assert lister.logs_requests == 2 * 2
    await p.stop()


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_granted_logs_requests_wait_as_a_queue_served_by_at_most_concurrency_tasks() -> None:
    """A raised budget grants a round's logs requests by the thousand: they wait in a queue,
    not as a task each holding its request's objects, and every one is still sent."""
    lister, state = Lister(2000), StateStore()
    p = poller(lister, state, interval=3600, budget=1_000_000, concurrency=3)
    p.apply({}, [ProjectSelector("proj", FunctionSettings(0.99))])
    await p.stop()  # no polls on their own: this test lists when it says
    await p.poll_project("proj")  # every function changed (first seen): logs asked for each
    tasks = len(asyncio.all_tasks())
    assert len(p._logs_workers) == 3
    assert tasks <= 1 + 3  # this test's own task and the workers
    await asyncio.gather(*p._logs_workers)
    assert lister.logs_requests == 2000
    assert not p._logs_workers
    await p.stop()
