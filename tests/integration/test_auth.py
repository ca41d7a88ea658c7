"""The token lifecycle against the simulator's real auth endpoints, with short token lifetimes."""

import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import (
    SIM_TOKEN,
    SimulatorProcess,
    http_json,
    run_exporter,
    wait_for,
)

EMAIL = "ops@example.com"
PASSWORD = "correct-horse-battery-9"


def configure(simulator: SimulatorProcess, **settings: Any) -> None:
    http_json("POST", f"{simulator.url}/_sim/auth", settings)


def auth_counts(simulator: SimulatorProcess) -> dict[str, int]:
    counts: dict[str, int] = simulator.state()["auth"]
    return counts


def login_config(
    tmp_path: Path,
    simulator: SimulatorProcess,
    functions: list[str],
    password: str = PASSWORD,
    interval: str = "1s",
) -> Path:
    (tmp_path / "password").write_text(password + "\n")
    config = tmp_path / "config.yaml"
    # a budget that keeps the interval at 1 s for 20 functions: these tests are about the
    # session; the simulator still enforces Mudbase's limit, which they stay far below
    config.write_text(
        f"mudbase: {{url: '{simulator.url}', email: {EMAIL}, "
        f"password_file: {tmp_path / 'password'}, timeout: 500ms, request_budget: 36000}}\n"
        f"interval: {interval}\n"
        f"targets: [{{project: auth, functions: [{', '.join(functions)}]}}]\n"
    )
    return config


def post(url: str, body: dict[str, object]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), json.loads(err.read())


def test_login_then_refresh_before_expiry_and_relogin_after_revocation(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("auth", "fn", initial_executions=3)
    configure(simulator, users={EMAIL: PASSWORD}, token_ttl=3)
    before = auth_counts(simulator)
    # polls 30 s apart, tokens of 3 s: the token is renewed on its own timer, between polls
    config = login_config(tmp_path, simulator, ["fn"], interval="30s")
    with run_exporter(config, "--log.level", "debug") as exp:
        expiries: list[float] = []

        def refreshed_three_times() -> bool:
            expiry = exp.metrics().get(
                ("mudbase_exporter_token_expiry_timestamp_seconds", (("source", "login"),))
            )
            if expiry is not None:  # None until the first login
                expiries.append(expiry - time.time())
            return auth_counts(simulator).get("refresh", 0) - before.get("refresh", 0) >= 3

        # several token lifetimes pass: refreshed in time, never logged in again
        wait_for(refreshed_three_times, 15, "three refreshes")
        assert expiries
        assert min(expiries) > 0  # never expired while nothing polled
        counts = auth_counts(simulator)
        assert counts.get("login", 0) - before.get("login", 0) == 1
        assert counts.get("session_revoked", 0) == before.get("session_revoked", 0)
        samples = exp.metrics()
        assert samples[("mudbase_function_up", (("function", "fn"), ("project", "auth")))] == 1
        expiry = samples[
            ("mudbase_exporter_token_expiry_timestamp_seconds", (("source", "login"),))
        ]
        assert expiry > 1.6e9

        # every session revoked upstream: the refresh is refused, the exporter logs in again
        configure(simulator, revoke_all=True)
        wait_for(
            lambda: auth_counts(simulator).get("login", 0) - before.get("login", 0) == 2,
            10,
            "a new login",
        )
        exp.wait_value("mudbase_function_up", "auth", "fn", lambda v: v == 1)
        exp.stop()
        logs = exp.logs()
    assert "logged in" in logs
    assert "token refresh refused; logging in again" in logs
    assert PASSWORD not in logs
    assert not re.search(r"\brt_[\w-]{20,}", logs)  # no refresh token in any line
    assert not re.search(r"eyJ[\w-]+\.[\w-]+", logs)  # no session token either


def test_wrong_password_costs_one_login_whatever_the_number_of_targets(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    functions = [f"f{i}" for i in range(20)]
    for name in functions:
        simulator.put_function("auth", name)
    configure(simulator, users={EMAIL: PASSWORD}, token_ttl=60)
    before = auth_counts(simulator)
    config = login_config(tmp_path, simulator, functions, password="wrong-password-1")
    with run_exporter(config) as exporter:
        wait_for(
            lambda: (
                exporter.metrics().get(
                    ("mudbase_exporter_poll_errors_total", (("reason", "auth"),)), 0
                )
                >= 40
            ),
            15,
            "two rounds of auth failures",
        )
        counts = auth_counts(simulator)
        text = exporter.metrics_text()
    assert counts.get("login_failed", 0) - before.get("login_failed", 0) == 1
    assert counts.get("login_rate_limited", 0) == before.get("login_rate_limited", 0)
    assert "wrong-password-1" not in text


def test_token_file_rotation_is_picked_up_without_restart(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("auth", "rotating", initial_executions=1)
    token_file = tmp_path / "token"
    token_file.write_text(SIM_TOKEN)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"mudbase: {{url: '{simulator.url}', token_file: {token_file}, timeout: 500ms}}\n"
        "interval: 1s\ntargets: [{project: auth, functions: [rotating]}]\n"
    )
    try:
        with run_exporter(config) as exporter:
            configure(simulator, tokens=["rotated-token-2"])  # the old token is now refused
            exporter.wait_value("mudbase_function_up", "auth", "rotating", lambda v: v == 0)
            token_file.write_text("rotated-token-2\n")
            exporter.wait_value("mudbase_function_up", "auth", "rotating", lambda v: v == 1)
            assert exporter.process.poll() is None
    finally:
        configure(simulator, tokens=[SIM_TOKEN])


def test_simulator_revokes_a_session_when_an_old_refresh_token_is_reused(
    simulator: SimulatorProcess,
) -> None:
    configure(simulator, users={EMAIL: PASSWORD}, token_ttl=60)
    status, login = post(f"{simulator.url}/api/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert status == 200
    first = login["data"]["refreshToken"]
    status, refreshed = post(f"{simulator.url}/api/auth/refresh", {"refreshToken": first})
    assert status == 200
    assert refreshed["data"]["refreshToken"] != first
    status, _ = post(f"{simulator.url}/api/auth/refresh", {"refreshToken": first})
    assert status == 401
    status, _ = post(
        f"{simulator.url}/api/auth/refresh", {"refreshToken": refreshed["data"]["refreshToken"]}
    )
    assert status == 401  # the whole session is gone
