"""The command line as a user runs it: --config.check, bad configs, the demo."""

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import (
    ROOT,
    SIM_TOKEN,
    SimulatorProcess,
    free_port,
    http_get,
    parse_metrics,
    run_exporter,
    wait_for,
    write_config,
)
from tests.rawhttp import RawClient


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_config_check_prints_targets_and_request_cost(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"mudbase: {{token_file: {tmp_path / 'token'}}}\ninterval: 30s\ntargets:\n"
        "  - project: p1\n    functions: [a, b]\n  - project: p2\n    functions: [c]\n"
    )
    (tmp_path / "token").write_text(SIM_TOKEN + "\n")
    result = run_cli("--config.check", "--config.file", str(config))
    assert result.returncode == 0, result.stderr
    assert "3 listed function(s) in 2 project(s)" in result.stdout
    assert "p1: a, b" in result.stdout
    assert "listed functions' polls: 90" in result.stdout  # 3 functions x 30 polls
    assert "token from a file" in result.stdout
    assert SIM_TOKEN not in result.stdout + result.stderr


def test_example_config_is_valid() -> None:
    result = run_cli(
        "--config.check",
        "--config.file",
        str(ROOT / "config.example.yaml"),
        env={"MUDBASE_TOKEN": "example-token"},
    )
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_bad_config_names_every_key_and_serves_nothing(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "mudbase:\n  url: ftp://x\n  tokn: abc\ninterval: 1 minute\n"
        "targets:\n  - project: ok\n    functions: [fine, 'bad/id']\n"
    )
    port = free_port()
    result = run_cli("--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert "mudbase.url: invalid URL 'ftp://x'" in result.stderr
    assert "mudbase.tokn: unknown key" in result.stderr
    assert "interval: invalid duration '1 minute'" in result.stderr
    assert "targets[0].functions[1]: invalid ID 'bad/id'" in result.stderr
    assert "mudbase.token: no credentials" in result.stderr
    try:
        http_get(f"http://127.0.0.1:{port}/", timeout=1)
        raise AssertionError("something is listening")
    except OSError:
        pass


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("--config.file", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert f"cannot read {str(tmp_path / 'nope.yaml')!r}: no such file or directory" in (
        result.stderr
    )


def _directory(path: Path) -> None:
    path.mkdir()


def _not_utf8(path: Path) -> None:
    path.write_bytes(b"\xff\xfetoken\n")


@pytest.mark.parametrize(
    ("make", "reason"), [(_directory, "is a directory"), (_not_utf8, "not UTF-8 text (byte 0)")]
)
def test_config_check_names_a_bad_token_file_without_a_traceback(
    tmp_path: Path, make: Callable[[Path], None], reason: str
) -> None:
    token = tmp_path / "token"
    make(token)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"mudbase: {{token_file: {token}}}\ntargets: [{{project: p, functions: [f]}}]\n"
    )
    result = run_cli("--config.check", "--config.file", str(config))
    assert result.returncode == 1
    assert f"  mudbase.token_file: cannot read {str(token)!r}: {reason}\n" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_config_check_names_a_bad_web_config_file_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("mudbase: {token: t}\ntargets: [{project: p, functions: [f]}]\n")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config: {{cert_file: {tmp_path}, key_file: {tmp_path}}}\n")
    args = ("--config.check", "--config.file", str(config), "--web.config.file", str(web))
    result = run_cli(*args)
    assert result.returncode == 1
    assert (
        f"  tls_server_config.cert_file: cannot read {str(tmp_path)!r}: is a directory\n"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_config_check_counts_listed_functions_and_discovered_projects_apart(
    tmp_path: Path,
) -> None:
    config = tmp_path / "discovery.yaml"
    config.write_text(
        "mudbase: {token: t}\ntargets:\n"
        "  - {project: a, functions: all}\n  - {project: b, functions: all}\n"
    )
    result = run_cli("--config.check", "--config.file", str(config))
    assert result.returncode == 0, result.stderr
    assert "\n  2 project(s) whose functions are discovered:\n    a: all" in result.stdout
    assert "function(s) in 0 project(s)" not in result.stdout
    example = run_cli(
        "--config.check",
        "--config.file",
        str(ROOT / "config.example.yaml"),
        env={"MUDBASE_TOKEN": "example-token"},
    )
    assert (
        "\n  4 listed function(s) in 2 project(s); 1 project(s) whose functions are discovered:\n"
        in example.stdout
    )


def test_bad_listen_address_is_rejected() -> None:
    result = run_cli("--web.listen-address", "localhost", "--config.file", "x")
    assert result.returncode == 2
    assert "--web.listen-address" in result.stderr


def test_demo_serves_simulated_functions_and_stops_cleanly() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url), 20, "the demo to be ready")
        samples = parse_metrics(http_get(f"{url}/metrics")[1].decode())
        ups = [v for (name, _), v in samples.items() if name == "mudbase_function_up"]
        assert len(ups) == 5
        assert all(v == 1 for v in ups)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=5)
        assert process.returncode == 0
        assert re.search(rf"metrics:\s+{re.escape(url)}/metrics", output)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _ready(url: str) -> bool:
    try:
        return http_get(f"{url}/-/ready", timeout=1)[0] == 200
    except OSError:
        time.sleep(0.2)
        return False


def test_compose_exporter_config_is_valid() -> None:
    result = run_cli("--config.check", "--config.file", str(ROOT / "deploy/compose/exporter.yml"))
    assert result.returncode == 0, result.stderr
    assert "5 listed function(s) in 2 project(s)" in result.stdout


def test_max_connections_holds_further_connections_in_the_backlog(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("cli", "capped")
    config = write_config(tmp_path, simulator.url, {"cli": ["capped"]}, interval="1h")
    with run_exporter(config, "--web.max-connections=1", "--log.level=debug") as exporter:
        port = int(exporter.url.rsplit(":", 1)[1])
        holder = RawClient(port)  # the one connection: a request begun, not ended
        holder.send(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        waiting = RawClient(port)
        waiting.request("GET", "/-/ready")
        wait_for(lambda: "connection limit reached" in exporter.logs(), 10, "the cap")
        assert waiting.nothing_received()
        holder.send(b"\r\n")
        assert holder.response().body == b"Healthy\n"
        holder.close()  # its slot frees: the waiting connection is served
        assert waiting.response().body == b"Ready\n"
        waiting.close()
    for value in ("0", "-1"):
        refused = run_cli(f"--web.max-connections={value}", "--config.file", str(config))
        assert refused.returncode == 2
        assert "--web.max-connections must be at least 1" in refused.stderr
