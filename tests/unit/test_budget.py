"""The shared request budget: a leaky bucket, and a pause for everyone after a 429."""

import asyncio

import pytest

from exporter.budget import BURST_SECONDS, RequestBudget


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
