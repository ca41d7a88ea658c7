"""What an alert description's template query costs Prometheus when every function alerts.

    .venv/bin/python bench/alert_templates.py --functions 10000 --seconds 90

Prometheus expands an alert's annotations for every active alert (pending or firing) at every
evaluation of its group, and a `query` in a template runs once per alert then. This script
serves a fixed exposition for N functions (each with the exporter's
`mudbase_function_last_failure_info` series and a gauge every function's alert fires on), starts
Debian's Prometheus on 127.0.0.1 in a temporary directory, and evaluates three groups, each with
one alert active for all N functions, every 10 s: descriptions without a query, with the
shipped page's query (bounded to the alert's own job, project and function), and with an
unbounded one (every function's series, filtered in the template). It prints the median
`prometheus_rule_group_last_duration_seconds` of each group, per alert and per 1,000 alerts.
"""

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.common import serve_metrics
from bench.rules import free_port, query, wait

BOUNDED = (
    '{{ with printf "mudbase_function_last_failure_info{job=%q,project=%q,function=%q}" '
    "$labels.job $labels.project $labels.function | query }}"
    '{{ . | first | label "error_class" }}{{ end }}'
)
UNBOUNDED = (
    '{{ range query "mudbase_function_last_failure_info" }}'
    '{{ if eq (label "function" .) $labels.function }}{{ label "error_class" . }}{{ end }}'
    "{{ end }}"
)
VARIANTS = {"none": "function {{ $labels.function }} fails", "bounded": BOUNDED}


def exposition(functions: int) -> bytes:
    lines = []
    for i in range(functions):
        labels = f'function="f{i:05d}",project="p{i % 50}"'
        lines.append(f"bench_alerting{{{labels}}} 1\n")
        lines.append(
            "mudbase_function_last_failure_info{"
            f'error_class="Timeout after <n>ms",{labels},invoked_by="trigger",'
            'trigger_type="http"} 1\n'
        )
    return "".join(lines).encode()


def rules(variants: dict[str, str]) -> dict[str, Any]:
    return {
        "groups": [
            {
                "name": name,
                "interval": "10s",
                "rules": [
                    {
                        "alert": f"Bench_{name}",
                        "expr": "bench_alerting > 0",
                        "annotations": {"description": template},
                    }
                ],
            }
            for name, template in variants.items()
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--unbounded", action="store_true", help="also the unbounded query")
    args = parser.parse_args()
    variants = VARIANTS | ({"unbounded": UNBOUNDED} if args.unbounded else {})
    work = Path(tempfile.mkdtemp(prefix="bench-alert-templates-"))
    body = exposition(args.functions)
    target = serve_metrics(lambda: body, free_port())
    port = free_port()
    (work / "rules.yml").write_text(yaml.safe_dump(rules(variants)))
    (work / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "5s", "evaluation_interval": "10s"},
                "rule_files": [str(work / "rules.yml")],
                "scrape_configs": [
                    {
                        "job_name": "mudbase",
                        "static_configs": [{"targets": [f"127.0.0.1:{target.server_port}"]}],
                    }
                ],
            }
        )
    )
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        firing = f"count(ALERTS) >= {len(variants) * args.functions}"
        wait(lambda: bool(_ready(base) and query(base, firing)["result"]), 120, "every alert")
        samples: dict[str, list[float]] = {name: [] for name in variants}
        end = time.time() + args.seconds
        while time.time() < end:
            for name, seconds in _group_durations(base).items():
                samples.setdefault(name, []).append(seconds)
            time.sleep(10)
        print("| description | alerts | group evaluation (median) | per 1,000 alerts |")
        print("|---|---|---|---|")
        for name, values in samples.items():
            if not values:
                raise SystemExit(f"no evaluation of group {name} was measured: {samples}")
            median = statistics.median(values)
            per_thousand = median / args.functions * 1000
            print(f"| {name} | {args.functions:,} | {median:.3f} s | {per_thousand:.3f} s |")
    finally:
        process.terminate()
        process.wait(timeout=30)
        target.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def _group_durations(base: str) -> dict[str, float]:
    """Each group's last evaluation time, from Prometheus' own /metrics (not scraped here)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {
        match.group(1): float(match.group(2))
        for match in re.finditer(
            r'^prometheus_rule_group_last_duration_seconds\{rule_group="[^"]*;([^"]+)"\} (\S+)$',
            text,
            re.MULTILINE,
        )
    }


def _ready(base: str) -> bool:
    try:
        return bool(query(base, "up")["result"])
    except OSError:
        return False


if __name__ == "__main__":
    main()
