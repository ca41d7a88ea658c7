"""`functions: all`: discovery from the list endpoint, and logs fetched only on change."""

from pathlib import Path

from tests.helpers import SIM_TOKEN, SimulatorProcess, http_json, run_exporter, wait_for

PROJECT = "disc"


def requests(simulator: SimulatorProcess) -> dict[str, int]:
    counts: dict[str, int] = simulator.state()["requests"]
    return counts


def config(tmp_path: Path, simulator: SimulatorProcess) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"mudbase: {{url: '{simulator.url}', token: {SIM_TOKEN}, timeout: 500ms}}\n"
        "interval: 1s\nmax_age: 1h\n"
        f"targets:\n  - {{project: {PROJECT}, functions: all, exclude: '^test-', "
        "active_only: true}\n"
    )
    return path


def test_discovered_functions_come_and_go_and_unchanged_ones_cost_no_logs_request(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function(
        PROJECT, "a", name="Alpha", trigger_type="cron", initial_executions=10, rate_per_minute=0
    )
    simulator.put_function(
        PROJECT, "b", initial_executions=20, rate_per_minute=0, dialect="openapi"
    )
    simulator.put_function(PROJECT, "c", active=False, initial_executions=5, rate_per_minute=0)
    simulator.put_function(PROJECT, "test-x", initial_executions=1, rate_per_minute=0)
    http_json("POST", f"{simulator.url}/_sim/requests/reset", {})
    with run_exporter(config(tmp_path, simulator)) as exporter:
        samples = exporter.metrics()
        published = {dict(lb)["function"] for (n, lb) in samples if n == "mudbase_function_up"}
        assert published == {"a", "b"}
        info = {
            "active": "true",
            "function": "a",
            "name": "Alpha",
            "project": PROJECT,
            "trigger_type": "cron",
        }
        assert samples[("mudbase_function_info", tuple(sorted(info.items())))] == 1
        assert exporter.value("mudbase_function_executions", PROJECT, "b") == 20

        # each function's first logs request comes within the logs share of the budget
        wait_for(lambda: requests(simulator).get("logs", 0) >= 2, 10, "first logs requests")
        # nothing runs: later rounds cost list requests only
        before = requests(simulator)
        wait_for(
            lambda: requests(simulator).get("list", 0) >= before.get("list", 0) + 3,
            10,
            "three more list rounds",
        )
        assert requests(simulator).get("logs", 0) == before.get("logs", 0)

        # a function starts running: its logs are fetched again, the others' still not
        simulator.put_function(PROJECT, "a", rate_per_minute=600)
        wait_for(
            lambda: requests(simulator).get("logs", 0) > before.get("logs", 0),
            10,
            "a logs request for the changed function",
        )
        exporter.wait_value(
            "mudbase_function_executions", PROJECT, "a", lambda v: v is not None and v > 10
        )

        # a new function appears, a deleted one disappears
        simulator.put_function(PROJECT, "d", initial_executions=4, rate_per_minute=0)
        http_json("DELETE", f"{simulator.url}/_sim/functions/{PROJECT}/b")
        exporter.wait_value("mudbase_function_executions", PROJECT, "d", lambda v: v == 4)
        wait_for(
            lambda: exporter.value("mudbase_function_up", PROJECT, "b") is None,
            10,
            "the deleted function to leave /metrics",
        )
        assert exporter.value("mudbase_function_executions", PROJECT, "b") is None
        simulator.put_function(PROJECT, "a", rate_per_minute=0)


def test_a_failing_list_marks_every_discovered_function_down(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"mudbase: {{url: '{simulator.url}', token: {SIM_TOKEN}, timeout: 500ms}}\n"
        "interval: 1s\ntargets:\n  - {project: disc_fail, functions: all}\n"
    )
    simulator.put_function("disc_fail", "one", initial_executions=1, rate_per_minute=0)
    with run_exporter(path) as exporter:
        assert exporter.value("mudbase_function_up", "disc_fail", "one") == 1
        http_json("POST", f"{simulator.url}/_sim/auth", {"tokens": ["another-token"]})
        try:
            exporter.wait_value("mudbase_function_up", "disc_fail", "one", lambda v: v == 0)
        finally:
            http_json("POST", f"{simulator.url}/_sim/auth", {"tokens": [SIM_TOKEN]})
        exporter.wait_value("mudbase_function_up", "disc_fail", "one", lambda v: v == 1)
