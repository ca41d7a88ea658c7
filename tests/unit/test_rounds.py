"""The request planner's projection against what the poller really sends, round after round,
for mixed configurations, in fake time.

A fake Mudbase answers in loop time (looptime's fake clock): every function runs steadily, each
answer takes 50 ms, and every request asks the planner for its turn as the real client does.
The real poller and planner run for several rounds; the requests they send, by kind, must agree
with the plan within 10%, and every function's data must stay fresh within the effective
interval plus a margin. The same scenarios run for real against the simulator in
tests/integration/test_planner.py; these cover more of them, at full scale, in a second.
"""

import asyncio
import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from exporter.client import MudbaseClient
from exporter.planner import RequestKind, RequestPlanner
from exporter.poller import Poller, PollSettings
from exporter.selfmetrics import ExporterMetrics
from exporter.state import StateStore
from exporter.targets import FunctionSettings, ProjectSelector, TargetKey
from exporter.upstream import Execution, FunctionPage, FunctionStats, FunctionSummary, LogsPage

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
LATENCY = 0.05
SETTINGS = FunctionSettings(0.99)
FRESHNESS_MARGIN = 0.1  # of the interval: how late a poll may end after its due time
ROUNDS = 6


class FakeMudbase:
    """Mudbase in loop time: each function has run `rate` times a second since time 0."""

    def __init__(self, planner: RequestPlanner, projects: dict[str, int], rate: float) -> None:
        self.planner = planner
        self.projects = projects
        self.rate = rate
        self.sent: Counter[RequestKind] = Counter()

    def _total(self) -> int:
        return math.floor(asyncio.get_running_loop().time() * self.rate)

    async def function_page(self, project: str, page: int) -> FunctionPage:
        async with self.planner.turn(RequestKind.LIST):
            self.sent[RequestKind.LIST] += 1
            await asyncio.sleep(LATENCY)
            size, stats = self.projects[project], FunctionStats(total_executions=self._total())
            ids = range((page - 1) * 100, min(page * 100, size))
            summaries = [FunctionSummary(f"f{i}", f"f{i}", True, "http", stats) for i in ids]
            return FunctionPage(summaries, math.ceil(size / 100))

    async def function_logs(
        self,
        project: str,
        function: str,
        *,
        limit: int = 1,
        offset: int = 0,
        kind: RequestKind = RequestKind.POLL,
    ) -> LogsPage:
        async with self.planner.turn(kind):
            self.sent[kind] += 1
            await asyncio.sleep(LATENCY)
            total = self._total()
            newest_first = range(total - 1 - offset, max(-1, total - 1 - offset - limit), -1)
            executions = tuple(self._execution(function, index) for index in newest_first)
            return LogsPage(FunctionStats(total_executions=total), executions)

    def _execution(self, function: str, index: int) -> Execution:
        at = EPOCH + timedelta(seconds=index / self.rate)
        return Execution(f"{function}-{index}", at, 0.1, True, "http", "trigger")


@dataclass(frozen=True)
class Scenario:
    name: str
    listed: int = 0
    projects: tuple[int, ...] = ()  # discovered projects' sizes
    execution_pages: int = 1
    rate: float = 0.1  # executions per function per second


SCENARIOS = [
    Scenario("100 listed beside a discovered project of 300", listed=100, projects=(300,)),
    Scenario("discovered projects of 50 and 5,000", projects=(50, 5000)),
    Scenario("30 listed fetching 3 pages of a busy function", listed=30, execution_pages=3, rate=5),
    Scenario("10 listed beside projects of 20, 800 and 3,000", listed=10, projects=(20, 800, 3000)),
    Scenario("1,000 listed beside 4,000 discovered", listed=1000, projects=(1000,) * 4),
    Scenario("10,000 discovered in 100 projects", projects=(100,) * 100),
]


@pytest.mark.asyncio
@pytest.mark.looptime
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_what_is_sent_agrees_with_the_plan_and_every_function_stays_fresh(
    scenario: Scenario,
) -> None:
    loop = asyncio.get_running_loop()
    metrics = ExporterMetrics(CollectorRegistry())
    planner = RequestPlanner(1600, 60, 8, metrics, pages_per_poll=scenario.execution_pages)
    projects = {f"p{i}": size for i, size in enumerate(scenario.projects)}
    mudbase = FakeMudbase(planner, projects, scenario.rate)
    state = StateStore()
    client: MudbaseClient = mudbase  # type: ignore[assignment]
    poller = Poller(
        client,
        state,
        metrics,
        planner,
        PollSettings(stale_after=3600, execution_pages=scenario.execution_pages),
        clock=loop.time,
    )
    listed = {TargetKey("listed", f"l{i}"): SETTINGS for i in range(scenario.listed)}
    poller.apply(listed, [ProjectSelector(p, SETTINGS) for p in projects])
    functions = scenario.listed + sum(scenario.projects)
    for _ in range(60):  # the first round, which tells the size of every project
        await asyncio.sleep(planner.interval / 20)
        if sum(1 for s in state.snapshot().values() if s.last_success) == functions:
            break
    # the first round's optional logs requests, shared before the projects' sizes were known,
    # drain during the next one
    await asyncio.sleep(planner.interval)
    interval = planner.interval
    sent_before, started = Counter(mudbase.sent), loop.time()
    oldest = 0.0
    while loop.time() - started < ROUNDS * interval:
        await asyncio.sleep(interval / 20)
        states = state.snapshot().values()
        assert len(states) == functions
        oldest = max(oldest, *(loop.time() - (s.last_success or -math.inf) for s in states))
    elapsed = loop.time() - started
    await poller.stop()

    assert planner.interval == interval  # the plan held after the first listings
    assert oldest <= interval * (1 + FRESHNESS_MARGIN)
    planned = planner.plan.per_15m()  # by kind; logins and refreshes are not planned
    sent = {kind: (mudbase.sent[kind] - sent_before[kind]) * 900 / elapsed for kind in planned}
    for kind in planned:
        assert sent[kind] == pytest.approx(planned[kind], rel=0.1, abs=1), kind
    assert sum(sent.values()) <= planner.plan.budget
    assert metrics.poll_errors.labels("timeout")._value.get() == 0
