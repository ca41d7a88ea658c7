"""The shared request budget: a leaky bucket, and a pause for everyone after a 429."""

import asyncio

import pytest

from exporter.budget import BURST_SECONDS, UNHINTED_PAUSE, RequestBudget


@pytest.mark.asyncio
async def test_bucket_admits_ten_seconds_of_budget_then_makes_requests_wait() -> None:
    budget = RequestBudget(1800)  # 2 per second: a bucket of 20
    admitted = 0

    async def one() -> None:
        nonlocal admitted
        await budget.acquire()
        admitted += 1

    tasks = [asyncio.create_task(one()) for _ in range(25)]
    await asyncio.sleep(0.05)
    assert admitted == 2 * BURST_SECONDS
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.asyncio
async def test_a_pause_holds_every_request_until_it_ends() -> None:
    budget = RequestBudget(100_000)
    budget.pause(0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(budget.acquire(), budget.acquire())
    assert loop.time() - started >= 0.3  # ordering, not speed: nobody went before the pause end
    budget.pause(0.0)  # a shorter pause never shortens a longer one


@pytest.mark.asyncio
async def test_429s_without_retry_after_escalate_per_episode_not_per_answer() -> None:
    budget = RequestBudget(1600)
    loop = asyncio.get_running_loop()
    for _ in range(5):  # five requests in flight all got a 429: one episode
        budget.pause_unhinted()
    assert budget.paused_for() == pytest.approx(UNHINTED_PAUSE, abs=0.05)
    budget.succeeded(sent_at=loop.time() - 1)  # sent before the pause: no reset
    budget._paused_until = 0.0  # the pause is over
    budget.pause_unhinted()  # the next episode doubles
    assert budget.paused_for() == pytest.approx(2 * UNHINTED_PAUSE, abs=0.05)
    budget._paused_until = 0.0
    budget.succeeded(sent_at=loop.time())  # a request sent after the pause was answered
    budget.pause_unhinted()
    assert budget.paused_for() == pytest.approx(UNHINTED_PAUSE, abs=0.05)
