"""The poller: even spreading, the concurrency bound, the poll cut-off, failure isolation."""

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from exporter.client import MudbaseClient
from exporter.errors import PollError, Reason
from exporter.poller import Poller, first_poll_delay, next_poll_time
from exporter.selfmetrics import ExporterMetrics
from exporter.state import StateStore
from exporter.targets import FunctionSettings, TargetKey
from exporter.upstream import FunctionStats

KEYS = [TargetKey("p", f"f{i}") for i in range(10)]
SETTINGS = dict.fromkeys(KEYS, FunctionSettings(0.99))


class FakeClient:
    """Stands in for MudbaseClient: answers, fails or hangs per function; counts concurrency."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = asyncio.Event()
        self.behaviour: dict[str, str] = {}

    async def function_stats(self, project: str, function: str) -> FunctionStats:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            kind = self.behaviour.get(function, "wait")
            if kind == "hang":
                await asyncio.Event().wait()
            if kind == "bug":
                raise ValueError("a bug")
            if kind == "forbidden":
                raise PollError(Reason.FORBIDDEN, "HTTP 403")
            await self.release.wait()
            return FunctionStats(total_executions=1)
        finally:
            self.in_flight -= 1


def poller(client: FakeClient, state: StateStore, interval: float = 60.0) -> Poller:
    fake: MudbaseClient = client  # type: ignore[assignment]
    return Poller(
        fake,
        state,
        ExporterMetrics(CollectorRegistry()),
        interval=interval,
        concurrency=3,
        keep_values_for=180,
    )


def test_six_functions_at_three_seconds_are_half_a_second_apart() -> None:
    phases = [i / 6 for i in range(6)]
    assert [first_poll_delay(p, 3.0) for p in phases] == pytest.approx([0, 0.5, 1, 1.5, 2, 2.5])
    later = [next_poll_time(100.0, p, 3.0, now=100.0) for p in phases]
    assert later == pytest.approx([103.0, 103.5, 104.0, 104.5, 105.0, 105.5])


def test_the_first_round_of_a_long_interval_is_compressed_into_ten_seconds() -> None:
    assert first_poll_delay(0.5, 600) == 5.0


def test_next_tick_never_drifts_and_skips_missed_ticks() -> None:
    assert next_poll_time(0.0, 0.25, 60, now=16.0) == 75.0
    assert next_poll_time(0.0, 0.25, 60, now=75.5) == 135.0
    assert next_poll_time(0.0, 0.25, 60, now=200.0) == 255.0  # ticks at 135 and 195 missed


@pytest.mark.asyncio
async def test_at_most_concurrency_polls_run_at_once() -> None:
    client, state = FakeClient(), StateStore()
    p = poller(client, state)
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
