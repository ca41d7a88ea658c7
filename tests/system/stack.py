"""The real Prometheus and Alertmanager from Debian, fed by the real exporter and simulator.

The configuration files are the project's own (prometheus/prometheus.yml, mudbase-rules.yml,
alertmanager.example.yml). Only addresses and timings are changed, mechanically:
- `fast_rules` divides every duration in the rules (range selectors, subquery steps, offsets,
  `for:` and group intervals) by 60, so a 1h window becomes 1m, `[29m59s]` becomes `[29983ms]`,
  `offset 1m` becomes `offset 1s`, `for: 2m` becomes 2s and the 5m group runs every 5s;
  expressions, thresholds, labels and annotations stay exactly as shipped;
- scrape and evaluation intervals become 1s, targets point at the test's processes, and each
  Alertmanager receiver's webhook URL points at the test's receiver, with group waits of 0-1s.
"""

import json
import re
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import ROOT, free_port, http_get, wait_for

PROMETHEUS_DIR = ROOT / "prometheus"
_DURATION = re.compile(r"(?:\d+(?:ms|[smhd]))+")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_IN_EXPR = re.compile(r"(?<=\[)[^\]]+(?=\])|(?<=offset )\S+")


def require_binary(name: str) -> str:
    """The binary's path; a missing one fails the test (never a skip: CI must install it)."""
    path = shutil.which(name)
    assert path, f"{name} is not installed: apt-get install prometheus prometheus-alertmanager"
    return path


def _scale(text: str) -> str:
    """Every duration in `text` divided by 60: `30m` -> `30s`, `29m59s` -> `29983ms`."""

    def shorter(match: re.Match[str]) -> str:
        parts = re.findall(r"(\d+)(ms|[smhd])", match.group(0))
        ms = sum(int(number) * _UNIT_MS[unit] for number, unit in parts) // 60
        return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"

    return _DURATION.sub(shorter, text)


def fast_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """The shipped rules with every duration (group intervals too) divided by 60; nothing else
    changes."""
    fast: dict[str, Any] = json.loads(json.dumps(rules))
    for group in fast["groups"]:
        if "interval" in group:
            group["interval"] = _scale(group["interval"])
        for rule in group["rules"]:
            rule["expr"] = _DURATION_IN_EXPR.sub(lambda m: _scale(m.group(0)), rule["expr"])
            if "for" in rule:
                rule["for"] = _scale(rule["for"])
    return fast


@dataclass
class WebhookReceiver:
    """Collects the notifications Alertmanager posts, by receiver path."""

    port: int
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def alerts(self, path: str, alertname: str, status: str) -> list[dict[str, Any]]:
        return [
            alert
            for got_path, body in list(self.received)
            if got_path == path
            for alert in body["alerts"]
            if alert["labels"].get("alertname") == alertname and alert["status"] == status
        ]


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            receiver.received.append((self.path, json.loads(self.rfile.read(length))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def alertmanager_config(receiver_port: int) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        (PROMETHEUS_DIR / "alertmanager.example.yml").read_text()
    )
    config["route"].update(group_wait="0s", group_interval="1s", repeat_interval="1h")
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"http://127.0.0.1:{receiver_port}/{receiver['name']}"
    return config


def prometheus_config(rules_file: Path, exporter: str | Path, alertmanager: str) -> dict[str, Any]:
    """The shipped prometheus.yml scraping `exporter`: an address, or a file of targets that a
    test rewrites to move the job to another exporter (a rollout)."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules_file)]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    (job,) = config["scrape_configs"]
    if isinstance(exporter, Path):
        del job["static_configs"]
        job["file_sd_configs"] = [{"files": [str(exporter)]}]
    else:
        job["static_configs"] = [{"targets": [exporter]}]
    return config


def write_targets(path: Path, *exporters: str) -> None:
    """The file of targets Prometheus reads (it notices a change at once)."""
    path.write_text(json.dumps([{"targets": list(exporters)}]))


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> dict[str, Any]:
        status, body = http_get(f"{self.url}/api/v1/query?query={urllib.parse.quote(expr)}")
        result: dict[str, Any] = json.loads(body)
        assert status == 200, result
        return result

    def vector(self, expr: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.query(expr)["data"]["result"]
        return data

    def matrix(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        """`expr` at every second from `start` to `end` (Unix times)."""
        query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 1})
        status, body = http_get(f"{self.url}/api/v1/query_range?{query}")
        result: dict[str, Any] = json.loads(body)
        assert status == 200, result
        data: list[dict[str, Any]] = result["data"]["result"]
        return data


@contextmanager
def run_server(args: list[str], url: str, log: Path) -> Iterator[None]:
    with log.open("w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _ready(url, process, log), 20, f"{args[0]} to be ready")
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def _ready(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"{process.args!r} exited:\n{log.read_text()}")
    try:
        return http_get(f"{url}/-/ready", timeout=1)[0] == 200
    except OSError:
        return False


@contextmanager
def run_alertmanager(workdir: Path, receiver_port: int) -> Iterator[str]:
    binary = require_binary("prometheus-alertmanager")
    config = workdir / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(receiver_port)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with run_server(args, url, workdir / "alertmanager.log"):
        yield f"127.0.0.1:{port}"


@contextmanager
def run_prometheus(workdir: Path, exporter: str | Path, alertmanager: str) -> Iterator[Prometheus]:
    binary = require_binary("prometheus")
    rules = workdir / "mudbase-rules.fast.yml"
    shipped = yaml.safe_load((PROMETHEUS_DIR / "mudbase-rules.yml").read_text())
    rules.write_text(yaml.safe_dump(fast_rules(shipped), sort_keys=False))
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(rules, exporter, alertmanager)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with run_server(args, url, workdir / "prometheus.log"):
        yield Prometheus(url)
