"""The request planner at the edges a real Mudbase account reaches, black-box in fake time.

The real poller, planner, API client (retries included) and login session run against a fake
Mudbase behind an httpx transport that answers in loop time (looptime's fake clock): slow list
pages, failing answers, a full budget. What the fake API receives is what Mudbase would count.
"""

import asyncio
import json
import math
import random
import re
import statistics
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from structlog.testing import capture_logs

from exporter import app
from exporter.auth import Credential, StaticToken
from exporter.client import MudbaseClient, RetryPolicy
from exporter.config import load_config
from exporter.planner import RequestPlanner
from exporter.poller import Poller, PollSettings
from exporter.selfmetrics import ExporterMetrics
from exporter.session import Session
from exporter.state import StateStore
from exporter.targets import FunctionSettings, ProjectSelector, TargetKey

BASE = "https://mudbase.test"
SETTINGS = FunctionSettings(0.99)
LIST = re.compile(r"^/api/functions/projects/([^/]+)/functions$")
LOGS = re.compile(r"^/api/functions/projects/([^/]+)/functions/([^/]+)/logs$")
WINDOW = 15 * 60.0


@dataclass
class FakeAPI:
    """Mudbase's API in loop time: projects of `projects[name]` functions, list pages taking
    `list_latency` s, logs answers `logs_latency` s, a share `failing` of logs answers a 500."""

    projects: dict[str, int] = field(default_factory=dict)
    list_latency: float = 0.05
    logs_latency: float = 0.05
    failing: float = 0.0
    failing_pages: set[int] = field(default_factory=set)  # list pages that always answer 500
    sent: list[tuple[float, str]] = field(default_factory=list)  # (loop time, kind)
    logs_of: dict[str, int] = field(default_factory=dict)  # logs requests per function
    rng: random.Random = field(default_factory=lambda: random.Random(7))  # noqa: S311 - not secret

    async def handle(self, request: httpx.Request) -> httpx.Response:
        loop = asyncio.get_running_loop()
        path = request.url.path
        if path.startswith("/api/auth/"):
            self.sent.append((loop.time(), "auth"))
            body = {"token": "tok", "refreshToken": f"rt-{len(self.sent)}", "expiresIn": 1800}
            return httpx.Response(200, json={"success": True, "data": body})
        if listing := LIST.match(path):
            self.sent.append((loop.time(), "list"))
            await asyncio.sleep(self.list_latency)
            page = int(request.url.params["page"])
            if page in self.failing_pages:
                return httpx.Response(500, json={"error": "boom"})
            return httpx.Response(200, json=self._page(listing.group(1), page))
        logs = LOGS.match(path)
        assert logs is not None, path
        self.sent.append((loop.time(), "logs"))
        self.logs_of[logs.group(2)] = self.logs_of.get(logs.group(2), 0) + 1
        await asyncio.sleep(self.logs_latency)
        if self.rng.random() < self.failing:
            return httpx.Response(500, json={"error": "boom"})
        stats = {"totalExecutions": 10, "failed": 0, "successRate": 100}
        return httpx.Response(200, json={"data": {"executions": [], "stats": stats}})

    def _page(self, project: str, page: int) -> dict[str, Any]:
        size = self.projects[project]
        ids = range((page - 1) * 100, min(page * 100, size))
        functions = [
            {"_id": f"f{i}", "name": f"f{i}", "stats": {"totalExecutions": 10}} for i in ids
        ]
        pagination = {"page": page, "totalPages": math.ceil(size / 100), "total": size}
        return {"success": True, "data": {"functions": functions, "pagination": pagination}}

    def most_in_a_window(self, kinds: tuple[str, ...] = ("auth", "list", "logs")) -> int:
        """The most requests of these kinds any sliding 15-minute window held."""
        times = [at for at, kind in self.sent if kind in kinds]
        most, first = 0, 0
        for last, at in enumerate(times):
            while times[first] <= at - WINDOW:
                first += 1
            most = max(most, last - first + 1)
        return most


@dataclass
class Exporter:
    api: FakeAPI
    planner: RequestPlanner
    poller: Poller
    state: StateStore
    metrics: ExporterMetrics
    registry: CollectorRegistry

    def ages(self) -> Iterator[float]:
        now = asyncio.get_running_loop().time()
        return (now - (s.last_success or -math.inf) for s in self.state.snapshot().values())

    def down(self) -> int:
        return sum(1 for s in self.state.snapshot().values() if s.up is False)


@asynccontextmanager
async def running(
    api: FakeAPI,
    *,
    listed: int = 0,
    budget: float = 1600,
    concurrency: int = 8,
    credential: Any = None,
) -> AsyncIterator[Exporter]:
    """The real poller, planner and client over `api`: `listed` functions of project `l`, and
    every project of the API discovered."""
    registry = CollectorRegistry()
    metrics = ExporterMetrics(registry)
    planner = RequestPlanner(budget, 60, concurrency, metrics)
    state = StateStore()
    async with httpx.AsyncClient(transport=httpx.MockTransport(api.handle)) as http:
        auth: Credential = credential(http, planner) if credential else StaticToken(SecretStr("t"))
        retry = RetryPolicy(attempts=4, initial_backoff=0.5, max_wait=30)
        client = MudbaseClient(BASE, auth, http, retry=retry, timeout=10, planner=planner)
        loop = asyncio.get_running_loop()
        settings = PollSettings(stale_after=3600)
        poller = Poller(client, state, metrics, planner, settings, clock=loop.time)
        targets = {TargetKey("l", f"l{i}"): SETTINGS for i in range(listed)}
        poller.apply(targets, [ProjectSelector(p, SETTINGS) for p in api.projects])
        try:
            yield Exporter(api, planner, poller, state, metrics, registry)
        finally:
            await poller.stop()


async def wait_until_all_polled(exporter: Exporter, count: int, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while sum(1 for s in exporter.state.snapshot().values() if s.last_success) < count:
        assert loop.time() < deadline, "not every function was polled in time"
        await asyncio.sleep(1)


@pytest.mark.asyncio
@pytest.mark.looptime
@pytest.mark.parametrize("functions", [3000, 10_000])
async def test_slow_list_pages_are_read_concurrently_and_every_function_stays_fresh(
    functions: int,
) -> None:
    """List pages taking 2 s each: read one after the other, 30 pages take 60 s, past the
    poll's deadline, and nothing was ever published. Read concurrently within the budget,
    every function is published, and the interval the plan reports holds them fresh."""
    api = FakeAPI(projects={"big": functions}, list_latency=2.0)
    with capture_logs() as logs:
        async with running(api) as exporter:
            await wait_until_all_polled(exporter, functions, 240)
            worst = 0.0
            for _ in range(300):  # five more minutes
                await asyncio.sleep(1)
                worst = max(worst, *exporter.ages())
            interval = exporter.planner.interval
    assert worst <= 2 * interval
    assert exporter.planner.plan.conditions.list_latency == pytest.approx(2.0, rel=0.05)
    assert not [e for e in logs if e["log_level"] == "warning" and "listing" in e["event"]]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_listing_slower_than_its_deadline_stretches_the_interval_with_a_warning() -> None:
    """8 s a page, 2 at a time: 30 pages take 2 minutes whatever the budget; the measured
    latency stretches the interval, said at warning level, and every function is published
    from its second listing on."""
    api = FakeAPI(projects={"big": 3000}, list_latency=8.0)
    with capture_logs() as logs:
        async with running(api, concurrency=2) as exporter:
            await wait_until_all_polled(exporter, 3000, 600)
    assert exporter.planner.interval >= 15 * 8 / 0.8
    changed = [e for e in logs if e["event"].startswith("interval changed")]
    assert changed
    assert changed[-1]["log_level"] == "warning"


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_failed_list_page_fails_only_the_functions_it_would_have_carried() -> None:
    """Page 2 of 3 fails through all its tries: the 150 functions pages 1 and 3 answered
    for are published and up; the 100 of page 2 are down, and none of them is dropped."""
    api = FakeAPI(projects={"p": 250})
    async with running(api) as exporter:
        await wait_until_all_polled(exporter, 250, 60)  # the first listing: every page
        api.failing_pages = {2}
        await asyncio.sleep(90)  # the next listing, its retries of page 2 included
        states = exporter.state.snapshot()
    up = sorted(int(k.function[1:]) for k, s in states.items() if s.up)
    down = sorted(int(k.function[1:]) for k, s in states.items() if s.up is False)
    assert up == [*range(100), *range(200, 250)]
    assert down == list(range(100, 200))
    assert all(states[k].stats is not None for k in states)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_retries_at_a_full_budget_find_room_and_no_function_goes_down() -> None:
    """106 listed functions (all 1,600 requests per 15 minutes hold at 60 s) with 10% of logs
    answers failing: the plan makes room for the measured re-sends (a little longer interval)
    and a retry goes before the next round's first tries, so no poll times out, the worst age
    stays bounded and does not grow, and Mudbase never sees more than the budget. (Before,
    functions went down from poll timeouts, their data older every round.)"""
    api = FakeAPI(failing=0.1)
    async with running(api, listed=106) as exporter:
        await wait_until_all_polled(exporter, 106, 120)
        worst: list[float] = []
        for _ in range(30):  # 30 minutes
            await asyncio.sleep(60)
            worst.append(max(exporter.ages()))
        interval = exporter.planner.interval
    errors = exporter.metrics.poll_errors
    assert errors.labels("timeout")._value.get() == 0
    assert errors.labels("rate_limited")._value.get() == 0
    # a poll whose four tries all fail (one in 10,000) keeps its function's data a round longer
    assert max(worst) <= interval * 2
    assert statistics.median(worst[15:]) <= statistics.median(worst[:15]) * 1.1  # not growing
    assert interval <= 60 * 1.4  # stretched a little
    assert api.most_in_a_window() <= 1600


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_no_15_minute_window_holds_more_than_the_budget_from_the_start() -> None:
    """With 3% of answers retried at a full budget, the bucket starting full let 1,630
    requests through in the first 15 minutes against a budget of 1,600."""
    api = FakeAPI(failing=0.03)
    async with running(api, listed=106):
        await asyncio.sleep(30 * 60)
    assert api.most_in_a_window() <= 1600
    assert api.most_in_a_window() >= 1500  # the budget was really used


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_logins_and_refreshes_take_their_turn_within_the_budget() -> None:
    """A login session whose token lives two minutes refreshes every 90 s: every login and
    refresh reaches Mudbase, so each takes a token from the same bucket as the polls, and at
    a full budget no 15-minute window holds more than the budget, refreshes included."""
    api = FakeAPI()
    sessions: list[Session] = []

    def session(http: httpx.AsyncClient, planner: RequestPlanner) -> Session:
        clock = asyncio.get_running_loop().time
        sessions.append(
            Session(BASE, "a@b.c", SecretStr("pw"), http, timeout=5, clock=clock, planner=planner)
        )
        return sessions[-1]

    async def short_lived(request: httpx.Request) -> httpx.Response:
        answer = await FakeAPI.handle(api, request)
        if request.url.path.startswith("/api/auth/"):
            body = json.loads(answer.content)
            body["data"]["expiresIn"] = 120
            return httpx.Response(200, json=body)
        return answer

    api.handle = short_lived  # type: ignore[method-assign]
    async with running(api, listed=106, credential=session) as exporter:
        renewal = asyncio.create_task(sessions[0].keep_fresh(exporter.metrics.loop_errors))
        await asyncio.sleep(16 * 60)
        renewal.cancel()
    auth = sum(1 for _, kind in api.sent if kind == "auth")
    assert auth >= 10
    turns = exporter.registry.get_sample_value(
        "mudbase_exporter_request_wait_seconds_count", {"kind": "auth"}
    )
    assert turns == auth  # each took its turn from the planner
    assert api.most_in_a_window() <= 1600


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_reload_keeps_the_schedule_and_the_logs_round_robin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload every 30 s that changes `mudbase.timeout` (a new HTTP client): the project is
    not listed again at once, and the logs requests go on round-robin through the discovered
    functions, oldest first, instead of starting over from the same few each time."""
    api = FakeAPI(projects={"d": 300})

    def fake_http(concurrency: int, timeout: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(api.handle))

    monkeypatch.setattr(app, "new_http_client", fake_http)
    config = tmp_path / "config.yaml"
    listed = ", ".join(f"l{i}" for i in range(60))

    def write(timeout: str) -> None:  # 63 required requests a round of 105: 21 logs requests
        config.write_text(
            f"mudbase: {{url: 'http://127.0.0.1:9', token: t0k3n, timeout: {timeout}}}\n"
            "max_age: 1s\ntargets:\n  - {project: d, functions: all}\n"
            f"  - {{project: l, functions: [{listed}]}}\n"
        )

    write("10s")
    exporter = app.Exporter(load_config(config), ("127.0.0.1", 0), str(config))
    runner = asyncio.create_task(exporter.run())
    for reload in range(10):  # five minutes
        await asyncio.sleep(30)
        write("9s" if reload % 2 == 0 else "10s")
        await exporter.reload()
    exporter.request_stop()
    await runner
    lists = sum(1 for _, kind in api.sent if kind == "list")
    assert lists <= 3 * 6  # a listing of 3 pages a minute, none more for the reloads
    discovered = [f for f in api.logs_of if f.startswith("f")]
    assert len(discovered) >= 5 * 18  # about 21 new ones a round
