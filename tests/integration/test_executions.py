"""Execution-level metrics from the real simulator's logs answers, over sockets."""

from pathlib import Path

from tests.helpers import (
    SIM_TOKEN,
    ExporterProcess,
    Samples,
    SimulatorProcess,
    run_exporter,
    wait_for,
    write_config,
)

OBSERVED = "mudbase_function_observed_executions_total"


def observed_by_outcome(samples: Samples, project: str, function: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for (name, labels), value in samples.items():
        found = dict(labels)
        if name == OBSERVED and (found["project"], found["function"]) == (project, function):
            counts[found["outcome"]] = counts.get(found["outcome"], 0) + value
    return counts


def coverage(exporter: ExporterProcess, project: str, function: str) -> tuple[float, float]:
    samples = exporter.metrics()
    labels = (("function", function), ("project", project))
    observed = sum(observed_by_outcome(samples, project, function).values())
    histogram = samples.get(("mudbase_function_execution_duration_seconds_count", labels))
    if histogram is None:
        return -1, -1  # no logs answer yet
    assert histogram == observed  # every simulated execution has an executionTime
    return observed, samples[("mudbase_function_unobserved_executions_total", labels)]


def test_each_execution_is_counted_once_by_outcome_with_its_duration(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function(
        "exec", "busy", rate_per_minute=600, failure_ratio=0.5, initial_executions=1000
    )
    config = write_config(tmp_path, simulator.url, {"exec": ["busy"]})
    with run_exporter(config) as exporter:
        first_total = exporter.value("mudbase_function_executions", "exec", "busy")
        assert first_total is not None
        wait_for(lambda: coverage(exporter, "exec", "busy")[0] >= 60, 20, "60 executions seen")
        samples = exporter.metrics()
    total = samples[("mudbase_function_executions", (("function", "busy"), ("project", "exec")))]
    observed = observed_by_outcome(samples, "exec", "busy")
    unobserved = samples[
        (
            "mudbase_function_unobserved_executions_total",
            (("function", "busy"), ("project", "exec")),
        )
    ]
    # the 1000 executions before the exporter started are not replayed into the counters; every
    # later one the stats counted was seen exactly once (the first poll after placing asks a full
    # page, later ones twice the last pace: 10 a second fit)
    assert unobserved == 0
    assert total - first_total - 15 <= sum(observed.values()) <= total - 1000
    assert observed["success"] > 0
    assert observed["failure"] > 0


def test_failures_that_show_up_after_newer_runs_are_counted_once_and_the_ratio_is_right(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    # a failure is dated by its start and shows up 2 s later (it timed out): in the log it
    # lands behind about ten executions that started after it, and behind the last poll's
    simulator.put_function(
        "exec",
        "slow",
        rate_per_minute=0,
        failure_ratio=0.5,
        failure_delay=2.0,
        initial_executions=100,
    )
    config = write_config(tmp_path, simulator.url, {"exec": ["slow"]}, extra="execution_pages: 3")
    labels = (("function", "slow"), ("project", "exec"))
    with run_exporter(config) as exporter:
        wait_for(lambda: coverage(exporter, "exec", "slow") == (0, 0), 10, "cursor placed")
        simulator.put_function("exec", "slow", rate_per_minute=300)
        wait_for(lambda: coverage(exporter, "exec", "slow")[0] >= 25, 20, "25 executions seen")
        simulator.put_function("exec", "slow", rate_per_minute=0)

        def every_execution_accounted_for() -> bool:
            samples = exporter.metrics()
            observed, unobserved = coverage(exporter, "exec", "slow")
            return observed + unobserved == samples[("mudbase_function_executions", labels)] - 100

        wait_for(every_execution_accounted_for, 10, "the counters to catch up with the stats")
        samples = exporter.metrics()
    counted = observed_by_outcome(samples, "exec", "slow")
    failed = samples[("mudbase_function_failed_executions", labels)]
    assert samples[("mudbase_function_unobserved_executions_total", labels)] == 0
    assert counted["failure"] == failed - 50  # every late failure, once
    assert counted["failure"] >= 5
    assert counted["success"] == samples[("mudbase_function_executions", labels)] - 100 - (
        failed - 50
    )


def test_a_page_too_small_for_a_burst_shows_up_as_unobserved_executions(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("exec", "burst", rate_per_minute=0, initial_executions=10)
    config = write_config(tmp_path, simulator.url, {"exec": ["burst"]})
    with run_exporter(config) as exporter:
        wait_for(lambda: coverage(exporter, "exec", "burst") == (0, 0), 10, "cursor placed")
        simulator.put_function("exec", "burst", rate_per_minute=60_000)  # 1,000 a second
        wait_for(lambda: coverage(exporter, "exec", "burst")[1] > 0, 10, "unobserved counted")
        simulator.put_function("exec", "burst", rate_per_minute=0)
        observed, _unobserved = coverage(exporter, "exec", "burst")
        assert observed >= 10  # each poll still sees a page's worth


def test_discovered_functions_get_execution_metrics_from_change_driven_logs_requests(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("execdisc", "worker", rate_per_minute=300, initial_executions=50)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"mudbase: {{url: '{simulator.url}', token: {SIM_TOKEN}, timeout: 500ms}}\n"
        "interval: 1s\ntargets:\n  - {project: execdisc, functions: all}\n"
    )
    with run_exporter(path) as exporter:
        wait_for(lambda: coverage(exporter, "execdisc", "worker")[0] >= 10, 20, "executions seen")
