"""The request planner: the plan of a round, priorities, the bucket, pauses and the logs share.

Every test here runs on looptime's fake event-loop clock: waits of seconds or minutes take no
real time, and loop times are exact.
"""

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from exporter.errors import PollError, Reason
from exporter.planner import (
    MAX_UNHINTED_PAUSE,
    POLL_DEADLINE,
    UNHINTED_PAUSE,
    Conditions,
    Demand,
    ProjectSize,
    RequestKind,
    RequestPlanner,
    RequestSkipped,
    bucket_size,
    make_plan,
    projected_plan,
    refill_rate,
)
from exporter.selfmetrics import ExporterMetrics

LIST, POLL, LOGS = RequestKind.LIST, RequestKind.POLL, RequestKind.LOGS
PACE = 900 / (1600 - 1600 / 90)  # seconds a request at 1600 per 15 min, less the bucket's 10 s


def planner(budget: float = 1800, interval: float = 60, concurrency: int = 100) -> RequestPlanner:
    return RequestPlanner(budget, interval, concurrency, ExporterMetrics(CollectorRegistry()))


def paused_for(p: RequestPlanner) -> float:
    """Seconds until requests may go again (0 when not paused)."""
    return max(0.0, p._bucket.paused_until - asyncio.get_running_loop().time())


def skipped(p: RequestPlanner, kind: RequestKind) -> float:
    value = p._metrics.requests_skipped.labels(kind.value)._value.get()
    assert isinstance(value, float)
    return value


async def hold(p: RequestPlanner, kind: RequestKind, order: list[str], seconds: float = 0) -> None:
    """One request: wait for its turn, note it, keep its slot for `seconds`."""
    async with p.turn(kind):
        order.append(kind.value)
        await asyncio.sleep(seconds)


def test_the_bucket_and_its_refill_make_the_budget_exactly() -> None:
    assert bucket_size(1600, 60) == pytest.approx(1600 / 90)  # ten seconds of the budget
    assert bucket_size(16_000, 6) == pytest.approx(16_000 / 900)  # a sixth of a short interval
    assert bucket_size(90, 60) == 2  # at least two
    for budget, interval in ((1600, 60), (16_000, 6), (90, 60), (10, 60)):
        full_then_refilled = bucket_size(budget, interval) + refill_rate(budget, interval) * 900
        assert full_then_refilled == pytest.approx(budget)


def test_the_interval_stretches_only_beyond_the_budget() -> None:
    assert make_plan(Demand(listed=100), 60, 1600).interval == 60
    assert make_plan(Demand(listed=200), 60, 1600).interval == pytest.approx(200 * PACE)
    assert make_plan(Demand(listed=100, pages_per_poll=3), 60, 1600).interval == (
        pytest.approx(300 * PACE)
    )
    # a 100-page listing must end within 70% of the interval at 1600 per 15 min (1.76 a second)
    big = Demand(projects={"big": ProjectSize(pages=100, functions=10_000)})
    assert make_plan(big, 60, 1600).interval == pytest.approx(100 * PACE / 0.7)


def test_optional_logs_requests_get_what_the_required_ones_leave_less_a_fifth() -> None:
    mixed = Demand(listed=100, projects={"p": ProjectSize(pages=3, functions=300)})
    plan = make_plan(mixed, 60, 1600)
    assert plan.logs_requests == 0  # 103 required of 105.5: nothing is optional
    roomy = make_plan(Demand(listed=10, projects={"p": ProjectSize(3, 300)}), 60, 1600)
    assert roomy.logs_requests == pytest.approx(60 / PACE * 0.8 - 13)
    assert roomy.per_15m() == {LIST: 45, POLL: 150, LOGS: pytest.approx(roomy.logs_requests * 15)}


def test_a_round_is_spread_over_the_time_the_budget_needs_for_it() -> None:
    assert make_plan(Demand(listed=5), 60, 1600).spread == 10  # little to pay: ten seconds
    assert make_plan(Demand(listed=5), 4, 1600).spread == 4  # never longer than the interval
    assert make_plan(Demand(listed=80), 60, 1600).spread == 80 * PACE  # at 1.76 a second
    assert make_plan(Demand(listed=500), 60, 1600).spread == 500 * PACE  # stretched: all of it


def test_the_projection_counts_a_page_per_discovered_project_until_listed() -> None:
    plan = projected_plan(4, ["a", "b"], 60, 1600, pages_per_poll=2)
    assert plan.demand.required == 4 * 2 + 2
    assert plan.discovery_capacity() == (9700, 7300)  # 105 a round, 8 for the polls; 70% of it


def test_no_optional_requests_are_planned_that_nothing_would_send() -> None:
    assert projected_plan(4, [], 60, 1600, pages_per_poll=1).logs_requests == 0  # no discovery
    api_key = projected_plan(4, ["a"], 60, 1600, pages_per_poll=1, change_driven_logs=False)
    assert api_key.logs_requests == 0  # no logs requests with an API key
    assert projected_plan(4, ["a"], 60, 1600, pages_per_poll=1).logs_requests > 0


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_list_pages_go_first_then_polls_then_optional_logs_requests() -> None:
    p = planner(budget=92)  # a bucket of two, and 0.1 a second
    order: list[str] = []
    await hold(p, POLL, order)
    await hold(p, POLL, order)  # the bucket is empty now
    tasks = [asyncio.create_task(hold(p, kind, order)) for kind in (LOGS, POLL, LIST)]
    await asyncio.gather(*tasks)
    assert order == ["poll", "poll", "list", "poll", "logs"]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_an_optional_request_leaves_half_the_bucket_to_required_ones() -> None:
    p = planner(budget=1800)  # 2 a second: a bucket of 20
    loop = asyncio.get_running_loop()
    order: list[str] = []
    for _ in range(10):
        await hold(p, POLL, order)  # half the bucket spent at once
    started = loop.time()
    await hold(p, LOGS, order)  # waits for one more token above the reserve: half a second
    assert loop.time() - started == pytest.approx(1 / refill_rate(1800, 60), abs=1e-3)
    started = loop.time()
    await hold(p, POLL, order)  # a required request still finds the reserve
    assert loop.time() == started


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_an_optional_request_is_dropped_rather_than_sent_past_its_deadline() -> None:
    p = planner(budget=92)
    for _ in range(2):
        await hold(p, POLL, [])
    POLL_DEADLINE.set(asyncio.get_running_loop().time() + 5)  # the next token comes at 10 s
    with pytest.raises(RequestSkipped):
        await hold(p, LOGS, [])
    assert skipped(p, LOGS) == 1
    order: list[str] = []
    POLL_DEADLINE.set(None)
    await hold(p, POLL, order)  # the dropped one took nothing
    assert order == ["poll"]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_at_most_concurrency_requests_are_in_flight() -> None:
    p = planner(budget=100_000, concurrency=3)
    in_flight, most = 0, 0

    async def one() -> None:
        nonlocal in_flight, most
        async with p.turn(POLL):
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(1)
            in_flight -= 1

    await asyncio.gather(*(one() for _ in range(10)))
    assert most == 3


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_pause_holds_waiting_requests_and_refuses_those_it_outlasts() -> None:
    p = planner(budget=92)
    loop = asyncio.get_running_loop()
    for _ in range(2):
        await hold(p, POLL, [])
    order: list[str] = []
    waiting = asyncio.create_task(hold(p, POLL, order))  # its token comes at 10 s
    POLL_DEADLINE.set(loop.time() + 20)
    refused = asyncio.create_task(hold(p, LIST, order))
    await asyncio.sleep(1)
    p.rate_limited(30.0)  # Retry-After: 30; the bucket stops filling
    with pytest.raises(PollError) as error:
        await refused  # its poll ends at 20 s, before the pause: refused now, not timed out
    assert error.value.reason is Reason.RATE_LIMITED
    assert loop.time() == 1
    p.rate_limited(5.0)  # a shorter pause never shortens a longer one
    await waiting
    assert order == ["poll"]
    assert loop.time() == 31  # held by the pause although its token came at 10 s
    assert p._metrics.rate_limit_paused._value.get() == 30
    assert skipped(p, LIST) == 1


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_429s_without_retry_after_escalate_per_episode_and_reset_after_an_answer() -> None:
    p = planner()
    for _ in range(5):  # five requests in flight got a 429: one episode
        p.rate_limited(None)
    assert paused_for(p) == UNHINTED_PAUSE
    async with p.turn(POLL) as sent_at:  # let go when the pause ended, so sent after it
        assert sent_at == UNHINTED_PAUSE
    p.rate_limited(None)  # a 429 again: the next episode doubles
    assert paused_for(p) == 2 * UNHINTED_PAUSE
    p.answered(sent_at)  # an answer to a request sent before this pause: no reset
    await asyncio.sleep(paused_for(p))
    p.rate_limited(None)
    assert paused_for(p) == 4 * UNHINTED_PAUSE
    await asyncio.sleep(paused_for(p))
    async with p.turn(POLL) as sent_at:
        p.answered(sent_at)  # sent after the pause and answered: back to the base pause
    p.rate_limited(None)
    assert paused_for(p) == UNHINTED_PAUSE
    for _ in range(10):
        await asyncio.sleep(paused_for(p))
        p.rate_limited(None)
    assert paused_for(p) == MAX_UNHINTED_PAUSE


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_new_configuration_keeps_the_pause_and_the_bucket_level() -> None:
    p = planner(budget=1800)
    for _ in range(20):
        await hold(p, POLL, [])  # the bucket of 20 is empty
    p.rate_limited(30.0)
    p.configure(budget=3600, interval=30, concurrency=8, pages_per_poll=1)  # 4 a second
    assert paused_for(p) == 30
    loop = asyncio.get_running_loop()
    sent: list[float] = []
    for _ in range(9):
        async with p.turn(POLL) as sent_at:
            sent.append(sent_at)
    # the pause held; then one request at once and the others at the new pace, no burst
    pace = 1 / refill_rate(3600, 30)  # about 4 a second
    assert sent == pytest.approx([30 + i * pace for i in range(9)], abs=1e-3)
    assert loop.time() == pytest.approx(30 + 8 * pace, abs=1e-3)


def test_discovered_projects_share_the_optional_requests_by_their_size() -> None:
    p = planner(budget=1600, interval=60)
    p.set_targets(0, ["small", "big"])
    p.project_listed("small", pages=1, functions=50)
    p.project_listed("big", pages=50, functions=5000)
    logs = p.plan.logs_requests  # 105.5 x 0.8 - 51 = 33.4 a round
    assert logs == pytest.approx(60 / PACE * 0.8 - 51)
    assert p.logs_allowance("big", [1] * 100, now=0) == 33  # 5000 / 5050 of it
    for round_ in range(1, 4):
        assert p.logs_allowance("small", [1] * 100, now=60 * round_) == 0  # 0.33 a round...
    assert p.logs_allowance("small", [1] * 100, now=240) == 1  # ... carried over: a request
    assert p.logs_allowance("big", [3, 3], now=240) == 2  # several pages cost as many requests


def fifty_projects_of_100() -> tuple[RequestPlanner, list[str]]:
    """5,000 discovered functions at the default budget and interval, every project listed."""
    p = planner(budget=1600, interval=60)
    projects = [f"p{i}" for i in range(50)]
    p.set_targets(0, projects)
    for name in projects:
        p.project_listed(name, pages=1, functions=100)
    return p, projects


def test_a_round_grants_no_more_than_it_leaves_for_logs_requests() -> None:
    """However the projects' listings fall in the rounds, and however many functions fail."""
    p, projects = fifty_projects_of_100()
    per_round = p.plan.logs_requests
    granted = 0
    for round_ in range(20):
        for index, name in enumerate(projects):
            now = 60 * round_ + 60 * index / len(projects)
            granted += p.logs_allowance(name, [1] * 100, failing=10 * (index % 3), now=now)
    # the pool starts full: a round and a half
    assert per_round * 20 - 1 <= granted <= per_round * 21.5


def test_functions_whose_failures_rose_take_the_round_whatever_their_projects_share() -> None:
    p, projects = fifty_projects_of_100()  # 0.67 logs requests a project
    per_round = p.plan.logs_requests
    assert per_round == pytest.approx(34.4, abs=0.1)
    # a round where each project spends its share on functions that merely ran...
    for index, name in enumerate(projects):
        p.logs_allowance(name, [1] * 100, now=60 * index / 50)
    # ... then the last project listed in the next round has 30 functions failing: all go
    # now (the others kept the failures' reserve, and it refilled meanwhile)
    for index, name in enumerate(projects[:-1]):
        p.logs_allowance(name, [1] * 100, now=60 + 60 * index / 50)
    assert p.logs_allowance("p49", [1] * 100, failing=30, now=60 + 59) >= 30


def test_failures_left_waiting_are_reserved_for_in_the_next_round() -> None:
    p, projects = fifty_projects_of_100()
    # 60 functions failing in one project: more than the pool holds (a round and a half)
    first = p.logs_allowance("p0", [1] * 100, failing=60, now=0)
    assert first == int(1.5 * p.plan.logs_requests)
    # the rest of the round: the other projects' functions that merely ran get nothing
    # until the pool holds what p0's failures wait for
    others = sum(
        p.logs_allowance(name, [1] * 100, now=60 * i / 50)
        for i, name in enumerate(projects)
        if name != "p0"
    )
    assert p.logs_allowance("p0", [1] * 100, failing=60 - first, now=60) >= 60 - first
    assert others < p.plan.logs_requests


def test_failing_functions_left_out_are_served_in_the_order_they_began_to_wait() -> None:
    """More failing functions than a round holds: those left out go before those of projects
    listed later, and before functions fetched already that keep failing."""
    p, _ = fifty_projects_of_100()
    # the pool is full at first: 51.6, and fills 0.57 a second
    assert p.logs_allowance("p0", [1] * 30, failing=30, now=0) == 30
    assert p.logs_allowance("p1", [1] * 30, failing=30, now=1) == 22  # 8 wait
    assert p.logs_allowance("p2", [1] * 30, failing=30, now=2) == 0  # behind p1's 8: 30 wait
    # the next round: p0's functions fail still, but p1's and p2's waited longer
    assert p.logs_allowance("p0", [1] * 30, failing=30, now=60) == 0
    assert p.logs_allowance("p1", [1] * 8, failing=8, now=61) == 8
    assert p.logs_allowance("p2", [1] * 30, failing=30, now=62) >= 24
    # a project whose listings stopped reserves nothing after two rounds
    assert p.logs_allowance("p3", [1] * 30, failing=30, now=60 * 6) == 30


def test_logs_requests_a_round_leaves_out_are_not_counted_as_skipped() -> None:
    """They wait for a later round (oldest first): nothing was lost. Only a request dropped
    at its deadline is skipped, or the counter would bury those under every due function."""
    p = planner(budget=1600, interval=60)
    p.set_targets(0, ["big"])
    p.project_listed("big", pages=50, functions=5000)
    for round_ in range(10):
        assert p.logs_allowance("big", [1] * 5000, now=60 * round_) < 5000
    assert skipped(p, LOGS) == 0


def test_a_listing_that_shows_a_bigger_project_replans_at_once() -> None:
    p = planner(budget=92, interval=60)  # 0.1 request a second
    p.set_targets(0, ["big"])
    assert p.interval == 60
    p.project_listed("big", pages=7)  # 7 pages take 70 s: within 70% only at 100 s
    assert p.interval == pytest.approx(100)
    assert p._metrics.poll_interval._value.get() == pytest.approx(100)
    p.project_listed("big", pages=3)
    assert p.interval == 60
    p.set_targets(0, [])
    assert p.plan.demand.required == 0


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_end_of_a_pause_is_told_in_unix_time_for_the_status_page() -> None:
    p = planner()
    assert p.pause_end() is None
    before = time.time()
    p.rate_limited(30.0)
    end = p.pause_end()
    assert end is not None
    assert before + 30 <= end <= time.time() + 30


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_within_a_kind_the_request_whose_poll_ends_first_goes_first() -> None:
    """A retry of a poll that started earlier goes before the next round's first tries."""
    p = planner(budget=92)
    for _ in range(2):
        await hold(p, POLL, [])  # the bucket is empty
    order: list[str] = []

    async def one(name: str, deadline: float) -> None:
        POLL_DEADLINE.set(deadline)
        async with p.turn(POLL):
            order.append(name)

    await asyncio.gather(one("next round's first try", 200), one("retry", 50))
    assert order == ["retry", "next round's first try"]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_measured_resends_are_planned_for_at_twice_their_rate() -> None:
    p = planner(budget=1600, interval=60, concurrency=8)
    p.set_targets(106, [])
    assert p.interval == pytest.approx(106 * PACE)  # 60.3 s: 105.5 requests fit a minute
    for i in range(200):
        async with p.turn(POLL, resend=i % 10 == 0):
            pass
    rate = p.plan.conditions.resend_rate
    assert rate == pytest.approx(20 / 180, abs=0.005)  # re-sends per first try (replanned
    # when it moves by half a percent)
    planned = 106 * (1 + 2 * rate) * PACE
    assert planned <= p.interval <= planned * 1.05  # not shortened by less than 5%
    assert p.plan.per_15m()[POLL] <= 900 / PACE  # within the budget, re-sends included


def test_a_listing_is_planned_at_the_measured_latency_when_that_is_slower() -> None:
    big = Demand(projects={"big": ProjectSize(pages=30, functions=3000)})
    fast = make_plan(big, 60, 1600, Conditions(concurrency=8, list_latency=2))
    assert fast.interval == 60  # 30 pages 8 at a time at 2 s: paced by the budget, 18 s
    slow = make_plan(big, 60, 1600, Conditions(concurrency=2, list_latency=8))
    assert slow.interval == pytest.approx((8 + 15 * 8) / 0.7)  # the first page, then 2 a time
