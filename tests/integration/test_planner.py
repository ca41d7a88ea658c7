"""The request planner for real: the exporter process against a simulator that enforces
Mudbase's per-IP limit, in mixed configurations.

Time runs ten times faster than in production, everything scaled alike: a 6 s interval for
60 s, a budget of 16,000 requests per 15 minutes for 1,600 (the planner's bucket holds a sixth
of the interval, 1 s, the same share of a round as production's 10 s), and a simulator
allowing 2,000 requests per 90 s for 2,000 per 15 minutes. Priorities and pacing are also
tested at full scale in fake time (tests/unit/test_rounds.py, test_planner_edges.py).

Each scenario checks, over three rounds: no 429 from the limit, every function's data fresh
within the effective interval plus a margin, no listing past its deadline, and the planner's
projection within 10% of the requests sent.
"""

import re
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    SIM_TOKEN,
    ExporterProcess,
    SimulatorProcess,
    run_exporter,
    run_simulator,
    wait_for,
)

SCALE = 10  # production seconds per test second
INTERVAL = 60 / SCALE
BUDGET = 1600 * SCALE
SIMULATOR_LIMIT = (2000, f"{900 // SCALE}s")
ROUNDS = 3
RENDER_LAG = 1.5  # /metrics is re-rendered at most once a second after a change
FRESHNESS_MARGIN = 0.1  # of the interval
PLANNED = "mudbase_exporter_planned_requests_per_15m"
LAST_SUCCESS = re.compile(r"^mudbase_function_last_success_timestamp_seconds\{.*\} (\S+)$", re.M)


@dataclass
class Measured:
    interval: float
    oldest: float  # the worst age of any function's data seen on /metrics
    sent_per_15m: float  # requests the simulator received, per 15 minutes of exporter time
    planned_per_15m: float  # the planner's projection, from /metrics
    timeouts: float


def functions(project: str, count: int, **options: Any) -> list[dict[str, Any]]:
    return [{"project": project, "id": f"f{i}", **options} for i in range(count)]


def config_for(targets: str, extra: str = "", auth: str = "") -> str:
    credentials = auth or f"token: {SIM_TOKEN}"
    return (
        f"mudbase: {{url: 'SIMULATOR_URL', {credentials}, timeout: 2s, "
        f"request_budget: {BUDGET}}}\n"
        f"interval: {INTERVAL:g}s\n{extra}targets:\n{targets}"
    )


def listed(project: str, count: int) -> str:
    ids = ", ".join(f"f{i}" for i in range(count))
    return f"  - {{project: {project}, functions: [{ids}]}}\n"


def discovered(project: str) -> str:
    return f"  - {{project: {project}, functions: all}}\n"


@contextmanager
def scenario(
    tmp_path: Path,
    sim_functions: Sequence[dict[str, Any]],
    text: str,
    users: dict[str, str] | None = None,
) -> Iterator[tuple[SimulatorProcess, ExporterProcess]]:
    with run_simulator(sim_functions, SIMULATOR_LIMIT, users) as simulator:
        write(tmp_path, simulator, text)
        with run_exporter(tmp_path / "config.yaml", wait_ready=False) as exporter:
            yield simulator, exporter


def write(tmp_path: Path, simulator: SimulatorProcess, text: str) -> None:
    (tmp_path / "config.yaml").write_text(text.replace("SIMULATOR_URL", simulator.url))


def data_ages(exporter: ExporterProcess) -> list[float]:
    now = time.time()
    return [now - float(value) for value in LAST_SUCCESS.findall(exporter.metrics_text())]


def measure(simulator: SimulatorProcess, exporter: ExporterProcess, count: int) -> Measured:
    """Wait for the first round (every function polled), then watch three rounds."""
    wait_for(lambda: len(data_ages(exporter)) == count, 3 * INTERVAL + 20, "every function")
    samples = exporter.metrics()
    interval = samples[("mudbase_exporter_poll_interval_seconds", ())]
    before, started = sum(simulator.requests().values()), time.monotonic()
    oldest = 0.0
    while time.monotonic() - started < ROUNDS * interval:
        oldest = max(oldest, *data_ages(exporter))
        time.sleep(0.25)  # a sampling period, not a wait for a condition
    sent = sum(simulator.requests().values()) - before
    elapsed = time.monotonic() - started
    samples = exporter.metrics()
    planned = sum(
        v for (name, _), v in samples.items() if name.endswith("planned_requests_per_15m")
    )
    timeouts = samples[("mudbase_exporter_poll_errors_total", (("reason", "timeout"),))]
    return Measured(interval, oldest, sent * 900 / elapsed, planned, timeouts)


def check(run: Measured, simulator: SimulatorProcess, exporter: ExporterProcess) -> None:
    assert simulator.refused() == 0
    assert run.oldest <= run.interval * (1 + FRESHNESS_MARGIN) + RENDER_LAG
    assert run.timeouts == 0
    assert "listing exceeded its deadline" not in exporter.logs()
    assert run.sent_per_15m == pytest.approx(run.planned_per_15m, rel=0.1)


def test_listed_functions_beside_a_discovered_project_all_stay_fresh(tmp_path: Path) -> None:
    """100 listed functions and a discovered project of 300, executions arriving steadily:
    103 required requests of a round's 106.7; the discovered functions are never starved."""
    sim = functions("lp", 100, rate_per_minute=30) + functions("dp", 300, rate_per_minute=30)
    text = config_for(listed("lp", 100) + discovered("dp"))
    with scenario(tmp_path, sim, text) as (simulator, exporter):
        run = measure(simulator, exporter, 400)
        check(run, simulator, exporter)
        assert run.interval == INTERVAL


def test_two_discovered_projects_of_very_different_sizes(tmp_path: Path) -> None:
    """50 and 5,000 functions: 51 list pages a round; the optional logs requests (due every
    round here) get what is left, shared by size, and never delay a listing."""
    sim = functions("small", 50) + functions("big", 5000)
    text = config_for(discovered("small") + discovered("big"), extra="max_age: 1s\n")
    with scenario(tmp_path, sim, text) as (simulator, exporter):
        run = measure(simulator, exporter, 5050)
        check(run, simulator, exporter)
        samples = exporter.metrics()
        assert samples[("mudbase_exporter_planned_requests_per_15m", (("kind", "list"),))] == (
            pytest.approx(51 * 150)
        )


def test_listed_functions_fetching_three_pages(tmp_path: Path) -> None:
    """30 busy listed functions, `execution_pages: 3`: 90 required requests a round."""
    sim = functions("busy", 30, rate_per_minute=3000)
    text = config_for(listed("busy", 30), extra="execution_pages: 3\n")
    with scenario(tmp_path, sim, text) as (simulator, exporter):
        run = measure(simulator, exporter, 30)
        check(run, simulator, exporter)
        requests = simulator.requests()
        assert requests["logs"] > 2.5 * 30 * ROUNDS  # the pages were really fetched


def test_a_reload_during_a_retry_after_keeps_the_pause_and_the_session(tmp_path: Path) -> None:
    """Mudbase said 429, Retry-After 10 s; a reload that rebuilds the client (a new interval,
    a new function) must neither send before the pause ends nor log in again."""
    sim = functions("rl", 4)
    auth = "email: ops@example.com, password: pw-9d2f"
    users = {"ops@example.com": "pw-9d2f"}
    with scenario(tmp_path, sim, config_for(listed("rl", 3), auth=auth), users) as (
        simulator,
        exporter,
    ):
        wait_for(lambda: exporter.get("/-/ready")[0] == 200, 20, "the exporter to be ready")
        simulator.set_fault("rl", "f0", "rate_limit", retry_after=10, remaining=1)
        wait_for(lambda: "pausing every request" in exporter.logs(), 10, "the 429")
        paused_at, count = time.monotonic(), simulator.requests().get("logs", 0)
        reloaded = config_for(listed("rl", 4), auth=auth).replace(f"{INTERVAL:g}s", "5s")
        write(tmp_path, simulator, reloaded)
        exporter.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in exporter.logs(), 5, "the reload")
        while time.monotonic() - paused_at < 9:  # nothing may go out during the pause
            assert simulator.requests().get("logs", 0) == count
            time.sleep(0.25)
        wait_for(lambda: simulator.requests().get("logs", 0) > count, 5, "polls to resume")
        for function in ("f0", "f1", "f2", "f3"):
            exporter.wait_value("mudbase_function_up", "rl", function, lambda v: v == 1)
        assert simulator.state()["auth"].get("login") == 1
        assert simulator.refused() == 0
