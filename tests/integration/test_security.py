"""No secret leaves the process: password, session and refresh tokens, API key, basic-auth
password; in debug logs, /metrics, the landing page, --config.check and error messages."""

import re
import time
from pathlib import Path

import bcrypt

from tests.helpers import (
    SIM_TOKEN,
    ClientOptions,
    SimulatorProcess,
    config_check,
    http_json,
    run_exporter,
    wait_for,
)

PASSWORD = "pw-S3cr3t-login-771"
SCRAPE_PASSWORD = "pw-scrape-basic-4242"
API_KEY = "ak_live_9f8e7d6c5b4a"


def test_login_mode_and_basic_auth_leak_nothing(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    http_json(
        "POST",
        f"{simulator.url}/_sim/auth",
        {"users": {"sec@example.com": PASSWORD}, "token_ttl": 2},
    )
    simulator.put_function("security", "ok")
    simulator.put_function("security", "denied")
    simulator.set_fault("security", "denied", "status", status=401)
    (tmp_path / "password").write_text(PASSWORD)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"mudbase: {{url: '{simulator.url}', email: sec@example.com, "
        f"password_file: {tmp_path / 'password'}, timeout: 500ms}}\n"
        "interval: 1s\ntargets: [{project: security, functions: [ok, denied]}]\n"
    )
    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(SCRAPE_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web.write_text(f"basic_auth_users:\n  prometheus: {hashed}\n")
    options = ClientOptions(basic_auth=("prometheus", SCRAPE_PASSWORD))
    with run_exporter(
        config, "--log.level", "debug", "--web.config.file", str(web), options=options
    ) as exporter:
        exporter.wait_value("mudbase_function_up", "security", "denied", lambda v: v == 0)
        exporter.wait_value("mudbase_function_up", "security", "ok", lambda v: v == 1)
        time.sleep(3)  # a token lifetime passes: refreshes happen and are logged at debug
        outputs = {
            "metrics": exporter.metrics_text(),
            "landing": exporter.get("/")[1].decode(),
        }
        exporter.stop()
        outputs["logs"] = exporter.logs()
    outputs["config.check"] = config_check(config)
    assert "token refreshed" in outputs["logs"]
    assert "login as sec@example.com" in outputs["config.check"]
    for where, text in outputs.items():
        for secret in (PASSWORD, SCRAPE_PASSWORD, hashed):
            assert secret not in text, f"{secret!r} in {where}"
        assert not re.search(r"eyJ[\w-]+\.[\w-]+", text), f"a session token in {where}"
        assert not re.search(r"\brt_[\w-]{20,}", text), f"a refresh token in {where}"


def test_api_key_mode_leaks_nothing_and_the_logs_endpoint_refuses_it(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    http_json("POST", f"{simulator.url}/_sim/auth", {"api_keys": [API_KEY]})
    simulator.put_function("security", "keyed")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"mudbase: {{url: '{simulator.url}', api_key: {API_KEY}, timeout: 500ms}}\n"
        "interval: 1s\ntargets: [{project: security, functions: [keyed]}]\n"
    )
    with run_exporter(config, "--log.level", "debug") as exporter:
        exporter.wait_value("mudbase_function_up", "security", "keyed", lambda v: v == 0)
        text = exporter.metrics_text() + exporter.get("/")[1].decode()
        exporter.stop()
        text += exporter.logs()
    assert 'reason="auth"' in text or "reason=auth" in text
    assert API_KEY not in text


URL_PASSWORD = "url-pass-5150"


def test_credentials_in_the_mudbase_url_are_never_shown(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("security", "in-url")
    with_user = simulator.url.replace("http://", f"http://ops:{URL_PASSWORD}@")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"mudbase: {{url: '{with_user}', token: {SIM_TOKEN}, timeout: 500ms}}\n"
        "interval: 1h\ntargets: [{project: security, functions: [in-url]}]\n"
    )
    check = config_check(config)
    assert f"mudbase: {simulator.url} (token from the config file)" in check
    with run_exporter(config, "--log.level", "debug", wait_ready=False) as exporter:
        wait_for(lambda: "polling started" in exporter.logs(), 10, "polling to start")
        exporter.stop()
        logs = exporter.logs()
    started = next(line for line in logs.splitlines() if "polling started" in line)
    assert f"url={simulator.url}" in started
    for where, text in (("--config.check", check), ("logs", logs)):
        assert URL_PASSWORD not in text, where
        assert "ops:" not in text, where
