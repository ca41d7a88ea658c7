"""The real exporter process against the real simulator process, over sockets."""

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import (
    SIM_TOKEN,
    Samples,
    SimulatorProcess,
    config_check,
    fn_labels,
    http_get,
    run_exporter,
    wait_for,
    write_config,
)


def test_both_dialects_are_published_with_exporter_units(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function(
        "dialects",
        "docs_fn",
        dialect="docs",
        rate_per_minute=0,
        initial_executions=400,
        failure_ratio=0.25,
        mean_execution_ms=250,
    )
    simulator.put_function(
        "dialects",
        "openapi_fn",
        dialect="openapi",
        rate_per_minute=0,
        initial_executions=200,
        failure_ratio=0.1,
        mean_execution_ms=1500,
    )
    config = write_config(tmp_path, simulator.url, {"dialects": ["docs_fn", "openapi_fn"]})
    with run_exporter(config) as exporter:
        samples = exporter.metrics()
    docs = fn_labels("dialects", "docs_fn")
    openapi = fn_labels("dialects", "openapi_fn")
    assert samples[("mudbase_function_executions", docs)] == 400
    assert samples[("mudbase_function_failed_executions", docs)] == 100
    assert samples[("mudbase_function_success_ratio", docs)] == pytest.approx(0.75)
    assert samples[("mudbase_function_avg_execution_time_seconds", docs)] == pytest.approx(0.25)
    assert samples[("mudbase_function_executions", openapi)] == 200
    assert samples[("mudbase_function_failed_executions", openapi)] == 20
    # OpenAPI dialect has no successRate: derived from the counts
    assert samples[("mudbase_function_success_ratio", openapi)] == pytest.approx(0.9)
    assert samples[("mudbase_function_avg_execution_time_seconds", openapi)] == pytest.approx(1.5)
    for labels in (docs, openapi):
        assert samples[("mudbase_function_up", labels)] == 1
        assert samples[("mudbase_function_last_run_timestamp_seconds", labels)] > 1.6e9
        assert (
            abs(samples[("mudbase_function_last_success_timestamp_seconds", labels)] - time.time())
            < 30
        )


def test_a_failing_function_flips_only_its_own_health_and_recovers(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    for name in ("good", "bad"):
        simulator.put_function("isolation", name, initial_executions=50, rate_per_minute=0)
    config = write_config(tmp_path, simulator.url, {"isolation": ["good", "bad"]})
    with run_exporter(config) as exporter:
        for kind, options, reason in (
            ("status", {"status": 503}, "server_error"),
            ("malformed", {}, "bad_response"),
            ("wrong_types", {}, "bad_response"),
            ("status", {"status": 403}, "forbidden"),
        ):
            simulator.set_fault("isolation", "bad", kind, **options)
            exporter.wait_value("mudbase_function_up", "isolation", "bad", lambda v: v == 0)
            samples = exporter.wait_metrics(counted(reason), f"a {reason} poll error counted")
            assert samples[("mudbase_function_up", fn_labels("isolation", "good"))] == 1
            # last known values stay published while the failure is recent
            assert samples[("mudbase_function_executions", fn_labels("isolation", "bad"))] == 50
            _status, page = http_get(f"{exporter.url}/")
            assert reason in page.decode()
            simulator.clear_faults("isolation", "bad")
            exporter.wait_value("mudbase_function_up", "isolation", "bad", lambda v: v == 1)
        assert exporter.process.poll() is None


def test_values_are_dropped_after_stale_after_but_up_stays(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("stale", "fn", initial_executions=10, rate_per_minute=0)
    config = write_config(tmp_path, simulator.url, {"stale": ["fn"]}, extra="stale_after: 2s")
    with run_exporter(config) as exporter:
        simulator.set_fault("stale", "fn", "status", status=500)
        exporter.wait_value("mudbase_function_executions", "stale", "fn", lambda v: v is None)
        assert exporter.value("mudbase_function_up", "stale", "fn") == 0
        assert (
            exporter.value("mudbase_function_last_success_timestamp_seconds", "stale", "fn")
            is not None
        )
        simulator.clear_faults("stale", "fn")


def test_a_deleted_function_loses_its_values_at_once(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("deleted", "fn", initial_executions=10, rate_per_minute=0)
    config = write_config(tmp_path, simulator.url, {"deleted": ["fn"]}, interval="1s")
    with run_exporter(config) as exporter:
        simulator.set_fault("deleted", "fn", "status", status=404)
        exporter.wait_value("mudbase_function_up", "deleted", "fn", lambda v: v == 0)
        assert exporter.value("mudbase_function_executions", "deleted", "fn") is None
        exporter.wait_metrics(counted("not_found"), "a not_found poll error counted")
        simulator.clear_faults("deleted", "fn")


def counted(reason: str) -> Callable[[Samples], bool]:
    """A scrape that has counted at least one poll error of `reason`."""
    key = ("mudbase_exporter_poll_errors_total", (("reason", reason),))
    return lambda samples: samples.get(key, 0) >= 1


def test_rate_limited_answer_is_retried_after_retry_after_and_served(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("limited", "fn", initial_executions=77, rate_per_minute=0)
    simulator.set_fault("limited", "fn", "rate_limit", retry_after=2, remaining=1)
    # an interval far longer than the test, so that the one poll is the only one
    config = write_config(tmp_path, simulator.url, {"limited": ["fn"]}, interval="60s")
    with run_exporter(config) as exporter:
        samples = exporter.wait_metrics(
            lambda s: s.get(("mudbase_exporter_poll_duration_seconds_count", ())) == 1,
            "the one poll counted",
        )
    assert samples[("mudbase_function_up", fn_labels("limited", "fn"))] == 1
    assert samples[("mudbase_function_executions", fn_labels("limited", "fn"))] == 77
    codes = {
        dict(labels)["code"]: value
        for (name, labels), value in samples.items()
        if name == "mudbase_exporter_upstream_requests_total"
    }
    assert codes == {"429": 1, "200": 1}
    # the one poll waited out the 2 s Retry-After before its second request
    assert samples[("mudbase_exporter_poll_duration_seconds_count", ())] == 1
    assert samples[("mudbase_exporter_poll_duration_seconds_sum", ())] >= 2.0


def test_timeout_longer_than_httpx_default_is_honoured(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("slowish", "fn", initial_executions=9, rate_per_minute=0)
    simulator.set_fault("slowish", "fn", "latency", latency=6, remaining=1)
    config = write_config(
        tmp_path, simulator.url, {"slowish": ["fn"]}, interval="20s", mudbase_extra="  timeout: 9s"
    )
    config.write_text(config.read_text().replace("  timeout: 500ms\n", ""))
    with run_exporter(config) as exporter:
        samples = exporter.metrics()
    assert samples[("mudbase_function_up", fn_labels("slowish", "fn"))] == 1
    assert samples[("mudbase_exporter_poll_errors_total", (("reason", "timeout"),))] == 0


def test_sparse_answer_publishes_what_it_has(simulator: SimulatorProcess, tmp_path: Path) -> None:
    simulator.put_function("sparse", "fn", initial_executions=33, rate_per_minute=0)
    simulator.set_fault("sparse", "fn", "sparse")
    config = write_config(tmp_path, simulator.url, {"sparse": ["fn"]})
    with run_exporter(config) as exporter:
        samples = exporter.metrics()
    labels = fn_labels("sparse", "fn")
    assert samples[("mudbase_function_up", labels)] == 1
    assert samples[("mudbase_function_executions", labels)] == 33
    for absent in (
        "mudbase_function_failed_executions",
        "mudbase_function_success_ratio",
        "mudbase_function_avg_execution_time_seconds",
    ):
        assert (absent, labels) not in samples
    simulator.clear_faults("sparse", "fn")


def test_upstream_change_is_visible_within_a_few_intervals(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("change", "fn", initial_executions=100, rate_per_minute=0)
    config = write_config(tmp_path, simulator.url, {"change": ["fn"]})
    with run_exporter(config) as exporter:
        assert exporter.value("mudbase_function_executions", "change", "fn") == 100
        simulator.put_function("change", "fn", rate_per_minute=600, failure_ratio=1.0)
        exporter.wait_value(
            "mudbase_function_executions",
            "change",
            "fn",
            lambda v: v is not None and v > 100,
            timeout=5,
        )
        ratio = exporter.value("mudbase_function_success_ratio", "change", "fn")
        assert ratio is not None
        assert ratio < 1.0
        simulator.put_function("change", "fn", rate_per_minute=0)


def test_slow_upstream_times_out_without_blocking_metrics(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("slow", "fn", initial_executions=5, rate_per_minute=0)
    simulator.put_function("slow", "fast", initial_executions=5, rate_per_minute=0)
    config = write_config(tmp_path, simulator.url, {"slow": ["fn", "fast"]}, interval="2s")
    with run_exporter(config) as exporter:
        simulator.set_fault("slow", "fn", "hang_body", latency=30)
        exporter.wait_value("mudbase_function_up", "slow", "fn", lambda v: v == 0)
        # a scrape answers from memory while the poll of "fn" hangs for 30 s
        started = time.monotonic()
        exporter.metrics()
        assert time.monotonic() - started < 10
        samples = exporter.wait_metrics(counted("timeout"), "a timeout counted")
        assert samples[("mudbase_function_up", fn_labels("slow", "fast"))] == 1
        simulator.clear_faults("slow", "fn")


def test_exposition_passes_promtool(simulator: SimulatorProcess, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (apt-get install prometheus)"
    simulator.put_function("promtool", "ok", initial_executions=10)
    simulator.put_function("promtool", "broken", initial_executions=10)
    simulator.set_fault("promtool", "broken", "status", status=500)
    config = write_config(tmp_path, simulator.url, {"promtool": ["ok", "broken"]})
    with run_exporter(config) as exporter:
        text = exporter.metrics_text()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""
    simulator.clear_faults("promtool", "broken")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stops_on_signal_within_five_seconds(
    simulator: SimulatorProcess, tmp_path: Path, sig: signal.Signals
) -> None:
    simulator.put_function("signals", "fn")
    config = write_config(tmp_path, simulator.url, {"signals": ["fn"]})
    with run_exporter(config) as exporter:
        started = time.monotonic()
        assert exporter.stop(sig, timeout=5) == 0
        assert time.monotonic() - started < 5


def test_token_never_leaves_the_process(simulator: SimulatorProcess, tmp_path: Path) -> None:
    simulator.put_function("secret", "fn")
    simulator.put_function("secret", "unauth")
    simulator.set_fault("secret", "unauth", "status", status=401)
    config = write_config(tmp_path, simulator.url, {"secret": ["fn", "unauth"]})
    with run_exporter(config, "--log.level", "debug") as exporter:
        exporter.wait_value("mudbase_function_up", "secret", "unauth", lambda v: v == 0)
        outputs = [exporter.metrics_text(), http_get(f"{exporter.url}/")[1].decode()]
        exporter.stop()
        outputs.append(exporter.logs())
    outputs.append(config_check(config))
    assert "poll failed" in outputs[2]
    assert "reason=auth" in outputs[2]
    for output in outputs:
        assert SIM_TOKEN not in output
    simulator.clear_faults("secret", "unauth")


def test_ready_only_after_every_function_was_polled(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("ready", "a")
    simulator.put_function("ready", "b")
    simulator.set_fault("ready", "b", "latency", latency=1.5, remaining=1)
    config = write_config(tmp_path, simulator.url, {"ready": ["a", "b"]}, interval="3s")
    with run_exporter(config, wait_ready=False) as exporter:
        # b's first poll starts 1.5 s in (the first round is spread) and its answer is slow
        assert http_get(f"{exporter.url}/-/ready")[0] == 503
        wait_for(lambda: http_get(f"{exporter.url}/-/ready")[0] == 200, 10, "readiness")
        assert exporter.value("mudbase_function_up", "ready", "b") is not None
