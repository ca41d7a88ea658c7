"""What the benchmarks share: a simulator process on loopback, small HTTP helpers, RSS."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def post(url: str, body: object) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_simulator(
    token: str,
    functions: list[dict[str, Any]],
    *,
    seed: int = 1,
    latency: str = "0",
    rate_limit: int | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """A simulator process serving these functions; the process and its base URL. It enforces
    Mudbase's per-IP limit (2000 per 15 minutes) unless `rate_limit` says otherwise (0: none,
    for benchmarks that lift the exporter's budget to measure something else)."""
    scenario = Path(f"/tmp/bench-scenario-{os.getpid()}.json")
    scenario.write_text(json.dumps({"tokens": [token], "functions": functions}))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter.simulator.cli",
            "--listen-address",
            "127.0.0.1:0",
            "--scenario",
            str(scenario),
            "--seed",
            str(seed),
            "--latency",
            latency,
            *([] if rate_limit is None else ["--rate-limit", str(rate_limit)]),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    url = process.stdout.readline().split("listening on ")[1].strip()
    return process, url
