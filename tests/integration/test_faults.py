"""Every fault kind against the real simulator: the exporter keeps serving, only the affected
function goes down with the right reason, the others keep being polled, and it recovers within
about one interval after the fault ends. A 429 is the exception: Mudbase's limit is per client
IP, so it pauses every function (tested on its own below)."""

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    ROOT,
    SIM_TOKEN,
    ExporterProcess,
    SimulatorProcess,
    fn_labels,
    http_json,
    run_exporter,
    wait_for,
    write_config,
)

PROJECT = "faults"


def failing_row(page: str, function: str, reason: str) -> bool:
    """The status page shows `function` failing, for `reason`."""
    pattern = (
        rf'<tr><td><span class="badge failing">failing[^<]*</span></td><td>{PROJECT}</td>'
        rf"<td>{function}</td>.*?<b>{reason}</b>.*?</tr>"
    )
    return re.search(pattern, page) is not None


BYSTANDERS = ["calm1", "calm2"]
INTERVAL = 1.0
RECOVERY_TIMEOUT = 3 * INTERVAL + 1.0  # one interval, the poll itself, and scheduling slack

FAULTS: list[tuple[str, dict[str, Any], str]] = [
    ("latency", {"latency": 3}, "timeout"),  # slower than the 500 ms timeout
    ("hang_body", {"latency": 30}, "timeout"),  # headers, half a body, then silence
    ("status", {"status": 500}, "server_error"),
    ("status", {"status": 503}, "server_error"),
    ("malformed", {}, "bad_response"),
    ("wrong_types", {}, "bad_response"),
    ("status", {"status": 401}, "auth"),
    ("status", {"status": 403}, "forbidden"),
    ("status", {"status": 404}, "not_found"),
]


@pytest.fixture(scope="module")
def exporter(
    simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    functions = ["victim", *BYSTANDERS]
    for name in functions:
        simulator.put_function(PROJECT, name, initial_executions=20)
    config = write_config(
        tmp_path_factory.mktemp("faults"), simulator.url, {PROJECT: functions}, interval="1s"
    )
    with run_exporter(config) as running:
        yield running


def errors(exporter: ExporterProcess, reason: str) -> float:
    return exporter.metrics().get(("mudbase_exporter_poll_errors_total", (("reason", reason),)), 0)


def polled_since(exporter: ExporterProcess, function: str, since: float) -> Callable[[], bool]:
    return lambda: freshness(exporter, function) > since


def freshness(exporter: ExporterProcess, function: str) -> float:
    value = exporter.value("mudbase_function_last_success_timestamp_seconds", PROJECT, function)
    assert value is not None
    return value


@pytest.mark.parametrize(
    ("kind", "options", "reason"),
    FAULTS,
    ids=[f"{k}-{o.get('status', '')}{reason}" for k, o, reason in FAULTS],
)
def test_fault_affects_only_its_function_and_recovers(
    simulator: SimulatorProcess,
    exporter: ExporterProcess,
    kind: str,
    options: dict[str, Any],
    reason: str,
) -> None:
    before = errors(exporter, reason)
    fresh_before = {name: freshness(exporter, name) for name in BYSTANDERS}
    simulator.set_fault(PROJECT, "victim", kind, **options)
    try:
        exporter.wait_value("mudbase_function_up", PROJECT, "victim", lambda v: v == 0, timeout=10)
        wait_for(lambda: errors(exporter, reason) > before, 10, f"a {reason} error")
        status, page = exporter.get("/")
        assert status == 200
        assert failing_row(page.decode(), "victim", reason)
        # the bystanders kept being polled successfully all along
        for name in BYSTANDERS:
            assert exporter.value("mudbase_function_up", PROJECT, name) == 1
            wait_for(polled_since(exporter, name, fresh_before[name]), 5, f"{name} polled")
    finally:
        simulator.clear_faults(PROJECT, "victim")
    exporter.wait_value(
        "mudbase_function_up", PROJECT, "victim", lambda v: v == 1, timeout=RECOVERY_TIMEOUT
    )
    assert exporter.value("mudbase_function_executions", PROJECT, "victim") is not None
    assert exporter.process.poll() is None


def test_an_expired_token_is_an_auth_failure(simulator: SimulatorProcess, tmp_path: Path) -> None:
    http_json(
        "POST",
        f"{simulator.url}/_sim/auth",
        {"users": {"soon@example.com": "pw-expiring"}, "token_ttl": 2},
    )
    login = http_json(
        "POST",
        f"{simulator.url}/api/auth/login",
        {"email": "soon@example.com", "password": "pw-expiring"},
    )
    token = login["data"]["token"]
    simulator.put_function(PROJECT, "expiring", initial_executions=1)
    config = write_config(tmp_path, simulator.url, {PROJECT: ["expiring"]}, interval="1s")
    config.write_text(config.read_text().replace(SIM_TOKEN, token))
    with run_exporter(config) as running:
        running.wait_value("mudbase_function_up", PROJECT, "expiring", lambda v: v == 0, timeout=10)
        assert running.metrics()[("mudbase_exporter_poll_errors_total", (("reason", "auth"),))]
        expiry = running.metrics()[
            ("mudbase_exporter_token_expiry_timestamp_seconds", (("source", "config"),))
        ]
        assert expiry < time.time()


def test_connection_refused_then_upstream_comes_back(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, url, {PROJECT: ["victim"]}, interval="1s")
    with run_exporter(config) as running:
        running.wait_value("mudbase_function_up", PROJECT, "victim", lambda v: v == 0)
        assert (
            running.metrics()[("mudbase_exporter_poll_errors_total", (("reason", "connection"),))]
            >= 1
        )
        scenario = tmp_path / "scenario.yaml"
        scenario.write_text(
            f"tokens: [{SIM_TOKEN}]\nfunctions: [{{project: {PROJECT}, "
            "id: victim, initial_executions: 4}]\n"
        )
        with subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter.simulator.cli",
                "--listen-address",
                f"127.0.0.1:{port}",
                "--scenario",
                str(scenario),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        ) as upstream:
            try:
                running.wait_value(
                    "mudbase_function_up",
                    PROJECT,
                    "victim",
                    lambda v: v == 1,
                    timeout=RECOVERY_TIMEOUT + 2,
                )
                samples = running.metrics()
                assert samples[("mudbase_function_executions", fn_labels(PROJECT, "victim"))] == 4
            finally:
                upstream.terminate()
                upstream.communicate(timeout=10)


def paused_seconds(exporter: ExporterProcess) -> float:
    return exporter.metrics()[("mudbase_exporter_rate_limit_paused_seconds_total", ())]


def test_429s_without_retry_after_pause_every_function_then_all_recover(
    simulator: SimulatorProcess, exporter: ExporterProcess
) -> None:
    """No Retry-After: every request is paused 2 s, the victim fails as rate_limited, and all
    functions are polled again once the 429s stop."""
    before, paused = errors(exporter, "rate_limited"), paused_seconds(exporter)
    simulator.set_fault(PROJECT, "victim", "rate_limit")
    try:
        exporter.wait_value("mudbase_function_up", PROJECT, "victim", lambda v: v == 0, timeout=10)
        assert errors(exporter, "rate_limited") > before
        status, page = exporter.get("/")
        assert status == 200
        assert failing_row(page.decode(), "victim", "rate_limited")
        assert paused_seconds(exporter) >= paused + 2  # everyone paused, not only the victim
    finally:
        simulator.clear_faults(PROJECT, "victim")
    for name in ["victim", *BYSTANDERS]:
        exporter.wait_value("mudbase_function_up", PROJECT, name, lambda v: v == 1, timeout=20)


def test_a_long_retry_after_pauses_every_function_then_all_recover(
    simulator: SimulatorProcess, exporter: ExporterProcess
) -> None:
    """Mudbase's limit is per client IP: a 429 with Retry-After stops every poll, not just one.
    5 s is over twice a poll's interval here, so every bystander has a poll that the pause
    outlasts, and it fails at once as rate_limited."""
    before = errors(exporter, "rate_limited")
    simulator.set_fault(PROJECT, "victim", "rate_limit", retry_after=5, remaining=1)
    try:
        wait_for(lambda: errors(exporter, "rate_limited") > before, 10, "the 429")
        wait_for(  # the pause is shown once, at the top of the status page, while it lasts
            lambda: b"Mudbase rate-limited the exporter" in exporter.get("/")[1],
            4,
            "the pause on the status page",
        )
        # during the pause the bystanders are not polled either: they fail as rate_limited
        wait_for(
            lambda: all(exporter.value("mudbase_function_up", PROJECT, n) == 0 for n in BYSTANDERS),
            5,
            "the pause to reach the other functions",
        )
    finally:
        simulator.clear_faults(PROJECT, "victim")
    for name in ["victim", *BYSTANDERS]:
        exporter.wait_value("mudbase_function_up", PROJECT, name, lambda v: v == 1, timeout=10)
    assert "pausing every request" in exporter.logs()
