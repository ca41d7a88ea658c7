"""How soon a function that starts failing has its error on /metrics, at 5,000 discovered
functions and the defaults, and what share of the executions the exporter counts.

    .venv/bin/python -m bench.failures --functions 5000 --failing 50 --minutes 10

A simulator process on loopback serves N functions in projects of 100 (each running 0.2 times
a minute, none failing, 50 to 100 ms per answer, Mudbase's per-IP limit of 2,000 requests per
15 minutes), and this checkout's exporter runs as its own process with a configuration that
sets nothing but the URL, the token and `functions: all` per project (60 s interval, budget
1,600). Once every function has been listed and `--warmup` minutes have passed, `--failing`
functions (one in each of the first projects) start failing: `--fail-rate` runs a minute,
`--fail-ratio` of them failing with `Timeout`. /metrics is read every 2 s until each of them
has `mudbase_function_last_failure_info{error_class="Timeout"}`, or `--minutes` pass. Printed:
per failing function the time from the start of its failures, and from its first failed
execution (read from the simulator's logs afterwards), to its error on /metrics (median and
worst); and the share of executions counted over the measured minutes: the exporter's
observed executions against the executions the simulator ran, and observed / (observed +
unobserved) as the exporter reports it.
"""

import argparse
import json
import math
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import get_json, post, start_simulator
from bench.scale import (
    OBSERVED,
    TOKEN,
    UNOBSERVED,
    free_port,
    layout,
    metrics_text,
    start_exporter,
    values,
    wait_for_answer,
)

UP = re.compile(r"^mudbase_function_up\{.*\} 1\.0$", re.M)
TIMEOUT_INFO = re.compile(
    r'^mudbase_function_last_failure_info\{error_class="Timeout",function="([^"]+)",', re.M
)


def specs(functions: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every function healthy, running 0.2 times a minute, in either stats dialect."""
    return [
        {
            "project": project,
            "id": function,
            "initial_executions": 50,
            "rate_per_minute": 0.2,
            "failure_ratio": 0.0,
            "dialect": "openapi" if i % 2 else "docs",
        }
        for i, (project, function) in enumerate(functions)
    ]


def config(url: str, projects: list[str]) -> str:
    targets = "".join(f"  - {{project: {p}, functions: all}}\n" for p in projects)
    return f"mudbase: {{url: '{url}', token: {TOKEN}}}\ntargets:\n{targets}"


def simulator_executions(url: str) -> int:
    return sum(
        f["stats"].get("totalExecutions", 0) for f in get_json(f"{url}/_sim/state")["functions"]
    )


def wait_all_up(port: int, functions: int, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if len(UP.findall(metrics_text(port))) >= functions:
            return time.monotonic() - started
        time.sleep(2)
    raise RuntimeError("not every function was listed in time")


def first_failures(url: str, failing: list[tuple[str, str]], since: float) -> dict[str, float]:
    """Each failing function's first failed execution at or after `since` (Unix time), from
    the simulator's logs (read after the exporter stopped, its request counts reset)."""
    post(f"{url}/_sim/requests/reset", {})
    first = {}
    for project, function in failing:
        answer = _logs(url, project, function)
        times = [
            datetime.fromisoformat(e["executedAt"].replace("Z", "+00:00")).timestamp()
            for e in answer["data"]["executions"]
            if not e["success"]
        ]
        times = [t for t in times if t >= since]
        if times:
            first[function] = min(times)
    return first


def _logs(url: str, project: str, function: str) -> Any:
    request = urllib.request.Request(
        f"{url}/api/functions/projects/{project}/functions/{function}/logs?limit=100",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def measure(args: argparse.Namespace) -> dict[str, Any]:
    functions = layout(args.functions)
    projects = sorted({p for p, _ in functions})
    failing = [(p, f) for p, f in functions if f.endswith("00")][: args.failing]
    simulator, url = start_simulator(TOKEN, specs(functions), seed=7, latency="0.05:0.1")
    workdir = Path(tempfile.mkdtemp(prefix="bench-failures-"))
    path = workdir / "config.yaml"
    path.write_text(config(url, projects))
    port = free_port()
    exporter = start_exporter(ROOT, path, port)
    try:
        wait_for_answer(f"http://127.0.0.1:{port}/metrics", 30)
        listed_after = wait_all_up(port, args.functions, 300)
        time.sleep(args.warmup * 60)
        text = metrics_text(port)
        observed0, unobserved0 = sum(values(OBSERVED, text)), sum(values(UNOBSERVED, text))
        ran0 = simulator_executions(url)
        started = time.time()
        for project, function in failing:
            post(
                f"{url}/_sim/functions",
                {
                    "project": project,
                    "id": function,
                    "rate_per_minute": args.fail_rate,
                    "failure_ratio": args.fail_ratio,
                    "error": "Timeout",
                },
            )
        seen: dict[str, float] = {}
        while time.time() - started < args.minutes * 60 and len(seen) < len(failing):
            now = time.time()
            for function in TIMEOUT_INFO.findall(metrics_text(port)):
                seen.setdefault(function, now)
            time.sleep(2)
        elapsed = time.time() - started
        text = metrics_text(port)
        observed = sum(values(OBSERVED, text)) - observed0
        unobserved = sum(values(UNOBSERVED, text)) - unobserved0
        ran = simulator_executions(url) - ran0
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
    try:
        first = first_failures(url, failing, started)
    finally:
        simulator.terminate()
        simulator.communicate(timeout=10)
    from_start = sorted(seen[f] - started for _, f in failing if f in seen)
    from_failure = sorted(seen[f] - first[f] for _, f in failing if f in seen and f in first)
    return {
        "functions": args.functions,
        "failing": len(failing),
        "every_function_listed_after_s": round(listed_after, 1),
        "measured_s": round(elapsed),
        "errors_on_metrics": len(seen),
        "from_failures_start_s": _spread(from_start),
        "from_first_failed_execution_s": _spread(from_failure),
        "executions_run": ran,
        "observed": round(observed),
        "unobserved": round(unobserved),
        "counted_of_run": round(observed / max(1, ran), 3),
        "observed_of_reported": round(observed / max(1, observed + unobserved), 3),
    }


def _spread(seconds: list[float]) -> dict[str, float] | None:
    if not seconds:
        return None
    return {
        "median": round(statistics.median(seconds), 1),
        "p90": round(seconds[math.ceil(0.9 * len(seconds)) - 1], 1),
        "worst": round(max(seconds), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=5000)
    parser.add_argument("--failing", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2, help="minutes after every listing")
    parser.add_argument("--fail-rate", type=float, default=2, help="runs a minute when failing")
    parser.add_argument("--fail-ratio", type=float, default=0.5)
    print(json.dumps(measure(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
