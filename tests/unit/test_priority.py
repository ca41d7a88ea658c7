"""Failures first: the order of the optional logs requests of discovered functions."""

import asyncio
import math

import pytest

from exporter.errors import PollError, Reason
from exporter.priority import CHANGED, FAILING, OLD, fingerprint, logs_priority, new_failures
from exporter.state import StateStore
from exporter.targets import FunctionSettings, ProjectSelector
from exporter.upstream import FunctionPage, FunctionStats, FunctionSummary, LogsPage
from tests.unit.test_poller import poller


def stats(total: int, failed: int) -> FunctionStats:
    return FunctionStats(total_executions=total, failed_executions=failed)


def test_new_failures_since_the_last_look() -> None:
    seen = fingerprint(stats(100, 10))
    assert new_failures(seen, stats(110, 13)) == 3
    assert new_failures(seen, stats(90, 2)) == 0  # shrank (retention, recreated): none
    assert new_failures(None, stats(100, 10)) == 0  # never looked: unknown
    assert new_failures(seen, FunctionStats(total_executions=120)) == 0


def test_failing_then_most_failing_then_changed_then_oldest() -> None:
    seen = fingerprint(stats(100, 10))
    due = {
        "idle, fetched long ago": logs_priority(seen, stats(100, 10), 100.0),
        "idle, never fetched": logs_priority(seen, stats(100, 10), -math.inf),
        "ran fine": logs_priority(seen, stats(120, 10), 50.0),
        "failed once": logs_priority(seen, stats(101, 11), 500.0),
        "failed a lot": logs_priority(seen, stats(150, 40), 900.0),
        "failed a lot too, fetched earlier": logs_priority(seen, stats(150, 40), 800.0),
        "first listed": logs_priority(None, stats(100, 10), -math.inf),
    }
    assert sorted(due, key=due.__getitem__) == [
        "failed a lot too, fetched earlier",
        "failed a lot",
        "failed once",
        "first listed",
        "ran fine",
        "idle, never fetched",
        "idle, fetched long ago",
    ]
    assert due["failed once"][0] == FAILING
    assert due["ran fine"][0] == CHANGED
    assert due["idle, never fetched"][0] == OLD


class Project:
    """A discovered project whose functions' stats the test sets; it records the logs
    requests in the order they are sent (it takes no turns: the order is the poller's)."""

    def __init__(self, functions: int) -> None:
        self.stats = {f"f{i}": stats(10, 0) for i in range(functions)}
        self.asked: list[str] = []

    async def function_logs(self, project: str, function: str, **_: object) -> LogsPage:
        self.asked.append(function)
        return LogsPage(self.stats[function])

    async def function_page(self, project: str, page: int) -> FunctionPage:
        ids = list(self.stats)[(page - 1) * 100 : page * 100]
        summaries = [FunctionSummary(i, i, True, "http", self.stats[i]) for i in ids]
        return FunctionPage(summaries, math.ceil(len(self.stats) / 100))


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_functions_whose_failures_rose_get_their_logs_first() -> None:
    project, state = Project(300), StateStore()
    # an hour's round at 4.5 requests per 15 minutes (paid at its exact pace), less the
    # headroom and 3 list pages: 5 logs requests a round
    p = poller(project, state, interval=3600, budget=4.5)
    p.apply({}, [ProjectSelector("proj", FunctionSettings(0.99))])
    await p.stop()  # no polls on their own: this test lists when it says
    await p.poll_project("proj")
    await asyncio.gather(*p._logs_workers)
    assert len(project.asked) == 5  # the round's share
    project.asked.clear()
    project.stats["f100"] = stats(13, 3)
    project.stats["f200"] = stats(17, 7)
    project.stats["f250"] = stats(11, 1)
    project.stats["f50"] = stats(15, 0)  # ran, no failure
    await asyncio.sleep(3600)  # the next round
    await p.poll_project("proj")
    await asyncio.gather(*p._logs_workers)
    assert project.asked[:4] == ["f200", "f100", "f250", "f50"]
    assert len(project.asked) == 5


class Projects(Project):
    """Several discovered projects of one fake; logs requests recorded as project/function,
    and a function's logs request can be made to fail."""

    def __init__(self, functions: int) -> None:
        super().__init__(functions)
        self.failing_logs: set[str] = set()

    async def function_logs(self, project: str, function: str, **_: object) -> LogsPage:
        self.asked.append(f"{project}/{function}")
        if function in self.failing_logs:
            raise PollError(Reason.SERVER_ERROR, "500")
        return LogsPage(self.stats[function])


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_failing_function_of_a_project_listed_later_is_fetched_before_the_others() -> None:
    """The logs requests granted wait in one queue: a function whose failures rose goes
    before the functions of projects listed earlier in the round that merely ran."""
    fake, state = Projects(100), StateStore()
    p = poller(fake, state, interval=60, budget=1600, concurrency=1)
    p.apply({}, [ProjectSelector(name, FunctionSettings(0.99)) for name in ("a", "b")])
    await p.stop()
    for name in ("a", "b"):
        await p.poll_project(name)
    await asyncio.gather(*p._logs_workers)
    await asyncio.sleep(60)
    fake.asked.clear()
    for i in range(100):
        fake.stats[f"f{i}"] = stats(11, 0)  # every function ran once...
    await p.poll_project("a")
    fake.stats["f7"] = stats(12, 1)  # ... and f7 failed once, seen when b is listed
    await p.poll_project("b")  # no answer of a's yet: the fake answers when the loop runs
    await asyncio.gather(*p._logs_workers)
    assert fake.asked[0] == "b/f7"
    assert any(asked.startswith("a/") for asked in fake.asked[1:])


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_failing_functions_logs_request_that_failed_keeps_it_first() -> None:
    project, state = Projects(300), StateStore()
    p = poller(project, state, interval=3600, budget=4.5)  # 5 logs requests a round
    p.apply({}, [ProjectSelector("proj", FunctionSettings(0.99))])
    await p.stop()
    await p.poll_project("proj")
    await asyncio.gather(*p._logs_workers)
    project.stats["f200"] = stats(17, 7)
    project.failing_logs.add("f200")
    for _ in range(2):
        await asyncio.sleep(3600)
        project.asked.clear()
        await p.poll_project("proj")
        await asyncio.gather(*p._logs_workers)
        assert project.asked[0] == "proj/f200"  # its failures are still new to the exporter
    project.failing_logs.clear()
    await asyncio.sleep(3600)
    await p.poll_project("proj")
    await asyncio.gather(*p._logs_workers)
    await asyncio.sleep(3600)
    project.asked.clear()
    await p.poll_project("proj")
    await asyncio.gather(*p._logs_workers)
    assert "proj/f200" not in project.asked[:1]  # answered: no longer new
