"""Live reload: SIGHUP and POST /-/reload; a bad file never replaces a good one."""

import signal
import urllib.request
from pathlib import Path

from tests.helpers import (
    SimulatorProcess,
    fn_labels,
    http_get,
    run_exporter,
    wait_for,
    write_config,
)

RELOAD_OK = ("mudbase_exporter_config_last_reload_successful", ())


def post(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=35) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


def test_sighup_adds_and_removes_targets_and_keeps_the_others(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        simulator.put_function("reload", name, initial_executions=10, rate_per_minute=0)
    config = write_config(tmp_path, simulator.url, {"reload": ["a", "b"]}, interval="2s")
    with run_exporter(config) as exporter:
        kept_since = exporter.value(
            "mudbase_function_last_success_timestamp_seconds", "reload", "b"
        )
        assert kept_since is not None
        write_config(tmp_path, simulator.url, {"reload": ["b", "c"]}, interval="2s")
        exporter.process.send_signal(signal.SIGHUP)
        exporter.wait_value("mudbase_function_up", "reload", "c", lambda v: v == 1)
        samples = exporter.metrics()
        assert ("mudbase_function_up", fn_labels("reload", "a")) not in samples
        assert ("mudbase_function_executions", fn_labels("reload", "a")) not in samples
        # b was never reset: its value is still there and its freshness only moved forward
        assert samples[("mudbase_function_executions", fn_labels("reload", "b"))] == 10
        assert (
            samples[("mudbase_function_last_success_timestamp_seconds", fn_labels("reload", "b"))]
            >= kept_since
        )
        assert samples[("mudbase_exporter_targets", ())] == 2
        assert samples[RELOAD_OK] == 1
        assert "configuration reloaded" in exporter.logs()


def test_bad_config_keeps_the_running_one_and_reports(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("reload_bad", "a", initial_executions=3)
    config = write_config(tmp_path, simulator.url, {"reload_bad": ["a"]}, interval="1s")
    good = config.read_text()
    with run_exporter(config) as exporter:
        before = exporter.metrics()[
            ("mudbase_exporter_config_last_reload_success_timestamp_seconds", ())
        ]
        config.write_text(good.replace("interval: 1s", "interval: soon\nbogus: 1"))
        status, body = post(f"{exporter.url}/-/reload")
        assert status == 500
        assert "interval: invalid duration 'soon'" in body
        assert "bogus: unknown key" in body
        samples = exporter.metrics()
        assert samples[RELOAD_OK] == 0
        assert (
            samples[("mudbase_exporter_config_last_reload_success_timestamp_seconds", ())] == before
        )
        # still polling with the old configuration
        polled = samples[
            ("mudbase_function_last_success_timestamp_seconds", fn_labels("reload_bad", "a"))
        ]
        exporter.wait_value(
            "mudbase_function_last_success_timestamp_seconds",
            "reload_bad",
            "a",
            lambda v: v is not None and v > polled,
        )
        exporter.process.send_signal(signal.SIGHUP)  # a failing SIGHUP does not stop it either
        config.write_text(good)
        status, body = post(f"{exporter.url}/-/reload")
        assert (status, body) == (200, "Reloaded\n")
        assert exporter.metrics()[RELOAD_OK] == 1
        assert exporter.process.poll() is None


def test_changed_interval_rebuilds_the_poller_without_a_gap(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("reload_interval", "a", initial_executions=5, rate_per_minute=0)
    config = write_config(tmp_path, simulator.url, {"reload_interval": ["a"]}, interval="5s")
    with run_exporter(config) as exporter:
        write_config(tmp_path, simulator.url, {"reload_interval": ["a"]}, interval="1s")
        assert post(f"{exporter.url}/-/reload")[0] == 200
        assert exporter.metrics()[("mudbase_exporter_poll_interval_seconds", ())] == 1
        # the value never left /metrics during the switch
        assert exporter.value("mudbase_function_executions", "reload_interval", "a") == 5


def test_reload_is_post_only(simulator: SimulatorProcess, tmp_path: Path) -> None:
    simulator.put_function("reload_get", "a")
    config = write_config(tmp_path, simulator.url, {"reload_get": ["a"]})
    with run_exporter(config) as exporter:
        assert http_get(f"{exporter.url}/-/reload")[0] == 405
        assert post(f"{exporter.url}/metrics")[0] == 405
        wait_for(lambda: exporter.process.poll() is None, 1, "exporter alive")
