"""What the shipped alert rules cost the real Prometheus, and whether they still alert right.

    .venv/bin/python bench/rules.py --functions 1000
    .venv/bin/python bench/rules.py --functions 10000 --step 120

Three days of synthetic history for N functions are written as OpenMetrics and turned into TSDB
blocks with `promtool tsdb create-blocks-from openmetrics`: per function the series the rules
read (the executions and failed-executions gauges, the observed-executions counter by outcome,
the unobserved counter) and the 5m building blocks the rules record, as three days of running
them would have left them (the long windows read those, never the raw series). The raw series
are backfilled for the last hour only by default (`--raw-history`, seconds): the rules read them
over 5 minutes, and three days of them at 10,000 functions are tens of gigabytes of text. Then
Debian's Prometheus starts on 127.0.0.1 in a temporary directory with the shipped rule file
unchanged, scrapes this script's live continuation of the same history, evaluates for some
minutes, and the script prints a markdown table: per rule group the median evaluation time
against its interval, the samples one evaluation reads
(each rule's query run once with `stats=all`),
Prometheus' peak RSS and the recorded series per function; then it checks that every incident
function's pages fire and that no other function has any function alert, pending or firing.

Functions, by index: 1 in 100 has an incident (30% failures for the last 6 hours and on); the
others are healthy (0.1%), slow burns (0.5% against the 99% objective), stats-only functions
whose gauges drop to 0 (a recreated function, retention) a day ago, low traffic (one execution
in 6 hours, half of them failing), failing polls (a 2-hour hole in every series) or not running
(counts that never move). The temporary directory is removed afterwards (`--keep` keeps it).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "mudbase-rules.yml"
HISTORY = 3 * 86400
BLOCK = 300  # the rules' building blocks: 5m increases, recorded every minute
JOB = "mudbase"
KINDS = ("healthy", "slow_burn", "stats_reset", "low_traffic", "poll_hole", "not_running")
INCIDENT_ALERTS = {("MudbaseFunctionSuccessRateLow", "critical"),
                   ("MudbaseFunctionErrorBudgetBurn", "critical")}  # fmt: skip


@dataclass(frozen=True)
class Function:
    """One synthetic function: cumulative counts as a function of time, analytic."""

    index: int
    kind: str
    start: float  # the history's first second
    now: float  # when the history was generated (the incident started 6h before)

    @property
    def labels(self) -> str:
        return f'project="p{self.index // 100:03d}",function="f{self.index:05d}"'

    @property
    def rate(self) -> float:
        """Executions per second."""
        if self.kind == "low_traffic":
            return 1 / 21600
        if self.kind == "not_running":
            return 0.0
        return (10 + self.index % 91) / 60

    def failure_ratio(self) -> float:
        return {"slow_burn": 0.005, "low_traffic": 0.5}.get(self.kind, 0.001)

    @property
    def incident_start(self) -> float:
        return self.now - 6 * 3600 if self.kind == "incident" else float("inf")

    @property
    def reset_at(self) -> float:
        return self.now - 86400 if self.kind == "stats_reset" else float("-inf")

    @property
    def counters(self) -> bool:
        return self.kind != "stats_reset"  # stats-only: execution_metrics off

    def present(self, t: float) -> bool:
        hole = self.kind == "poll_hole" and self.now - 36 * 3600 <= t < self.now - 34 * 3600
        return not hole

    def executions(self, t: float) -> float:
        return 1000 + self.rate * (t - self.start)

    def failures(self, t: float) -> float:
        base = self.rate * self.failure_ratio() * (t - self.start)
        extra = self.rate * (0.3 - self.failure_ratio()) * max(0.0, t - self.incident_start)
        return 10 + base + extra

    def gauges(self, t: float) -> tuple[float, float]:
        """The stats gauges, which drop to the counts since the reset once it happened."""
        if self.kind == "stats_reset" and t >= self.reset_at:
            return (
                self.executions(t) - self.executions(self.reset_at),
                self.failures(t) - self.failures(self.reset_at),
            )
        return self.executions(t), self.failures(t)

    def observed(self, t: float) -> tuple[float, float, float]:
        """Counters (success, failure, unknown): 90% of executions observed, 1% unknown."""
        seen = 0.9 * (self.executions(t) - self.executions(self.start))
        failed = 0.9 * (self.failures(t) - self.failures(self.start))
        unknown = 0.01 * seen
        return seen - failed - unknown, failed * 0.99, unknown

    def unobserved(self, t: float) -> float:
        return 0.1 * (self.executions(t) - self.executions(self.start))

    def blocks(self, t: float) -> tuple[float, float, float] | None:
        """The 5m blocks the rules record at t: (failures, known-outcome, all executions)."""
        if not (self.present(t) and self.present(t - BLOCK)):
            return None
        if self.counters:
            if self.rate == 0:
                return 0.0, 0.0, 0.0  # counters stand still: the stats decide, 0 of 0
            success, failed, _ = self.observed(t)
            success0, failed0, _ = self.observed(t - BLOCK)
            known = success + failed - success0 - failed0
            return failed - failed0, known, self.executions(t) - self.executions(t - BLOCK)
        if t - BLOCK < self.reset_at <= t:
            return None  # the block that holds the drop is discarded
        (e1, f1), (e0, f0) = self.gauges(t), self.gauges(t - BLOCK)
        return f1 - f0, e1 - e0, e1 - e0

    def raw(self, t: float) -> Iterator[tuple[str, str, float]]:
        """(family, series, value) of the raw series at t."""
        executions, failures = self.gauges(t)
        yield "mudbase_function_executions", f"{{{self.labels}}}", round(executions)
        yield "mudbase_function_failed_executions", f"{{{self.labels}}}", round(failures)
        if self.counters:
            success, failed, unknown = self.observed(t)
            family = "mudbase_function_observed_executions"
            for outcome, value in (("success", success), ("failure", failed), ("unknown", unknown)):
                labels = (
                    f'{self.labels},outcome="{outcome}",trigger_type="http",invoked_by="trigger"'
                )
                yield family, f"_total{{{labels}}}", round(value)
            yield (
                "mudbase_function_unobserved_executions",
                f"_total{{{self.labels}}}",
                round(self.unobserved(t)),
            )


def build_functions(n: int, now: float) -> list[Function]:
    def kind(i: int) -> str:
        return "incident" if i % 100 == 0 else KINDS[i % len(KINDS)]

    return [Function(i, kind(i), now - HISTORY, now) for i in range(n)]


BLOCK_NAMES = (
    "mudbase_function:failed_executions:increase5m",
    "mudbase_function:known_outcome_executions:increase5m",
    "mudbase_function:executions:increase5m",
)
TYPES = {
    "mudbase_function_executions": "gauge",
    "mudbase_function_failed_executions": "gauge",
    "mudbase_function_observed_executions": "counter",
    "mudbase_function_unobserved_executions": "counter",
}


def write_history(
    path: Path, functions: list[Function], instance: str, step: int, raw_history: int
) -> int:
    """The OpenMetrics file promtool turns into blocks; returns the number of samples. Each
    family's samples are written to a file of their own, then concatenated (OpenMetrics keeps
    a family's samples together)."""
    end = int(functions[0].now) // 60 * 60
    start = end - HISTORY
    raw_times = [t for t in range(start, end, step) if t >= end - raw_history]
    block_times = range(start, end, max(60, step))  # the rules record them every minute
    common = f'instance="{instance}",job="{JOB}",'
    families = {**TYPES, **dict.fromkeys(BLOCK_NAMES, "gauge")}
    parts = {family: path.with_suffix(f".{n}") for n, family in enumerate(families)}
    files = {family: part.open("w") for family, part in parts.items()}
    samples = 0
    for f in functions:
        lines: dict[tuple[str, str], list[str]] = {}
        for t in raw_times:
            if f.present(t):
                for family, series, value in f.raw(t):
                    lines.setdefault((family, series), []).append(f" {value} {t}\n")
        for (family, series), points in lines.items():
            name = family + series.replace("{", "{" + common, 1)
            files[family].write("".join(name + p for p in points))
            samples += len(points)
        blocks = [(t, f.blocks(t)) for t in block_times]
        for k, family in enumerate(BLOCK_NAMES):
            name = f"{family}{{{common}{f.labels}}}"
            points = [f"{name} {v[k]:.6g} {t}\n" for t, v in blocks if v is not None]
            files[family].write("".join(points))
            samples += len(points)
    with path.open("w") as out:
        for family, kind in families.items():
            files[family].close()
            out.write(f"# TYPE {family} {kind}\n")
            with parts[family].open() as part:
                shutil.copyfileobj(part, out)
            parts[family].unlink()
        out.write("# EOF\n")
    return samples


class LiveTarget:
    """Serves the functions' current values: the history's continuation, scraped live."""

    def __init__(self, functions: list[Function], port: int) -> None:
        self.functions = functions
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = target.render(time.time()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def render(self, t: float) -> str:
        lines: dict[str, list[str]] = {family: [] for family in TYPES}
        objectives = []
        for f in self.functions:
            objectives.append(f"mudbase_function_slo_objective{{{f.labels}}} 0.99")
            for family, series, value in f.raw(t):
                lines[family].append(f"{family}{series} {value}")
        text = ["# TYPE mudbase_function_slo_objective gauge", *objectives]
        for family, kind in TYPES.items():
            text += [f"# TYPE {family} {kind}", *lines[family]]
        return "\n".join(text) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=120) as response:
        return json.loads(response.read())


def query(base: str, expr: str, stats: bool = False) -> Any:
    params = {"query": expr, **({"stats": "all"} if stats else {})}
    return get(f"{base}/api/v1/query?{urllib.parse.urlencode(params)}")["data"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(what)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    assert prometheus, "apt-get install prometheus"
    assert promtool, "apt-get install prometheus"
    now = time.time()
    functions = build_functions(args.functions, now)
    target_port, prom_port = free_port(), free_port()
    instance = f"127.0.0.1:{target_port}"

    began = time.monotonic()
    history = work / "history.om"
    samples = write_history(history, functions, instance, args.step, args.raw_history)
    tsdb = work / "tsdb"
    generated_s = time.monotonic() - began
    # --max-block-duration (hidden in promtool 2.42): one pass over the file per 24h block,
    # not one per 2h block
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q",
                    "--max-block-duration=72h", str(history), str(tsdb)],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    history.unlink()
    print(f"generated {samples:,} samples in {generated_s:.0f} s, blocks after "
          f"{time.monotonic() - began:.0f} s", file=sys.stderr)  # fmt: skip

    LiveTarget(functions, target_port)
    config = {
        "global": {"scrape_interval": f"{args.step}s", "evaluation_interval": "1m"},
        "rule_files": [str(args.rules.resolve())],
        "scrape_configs": [{"job_name": JOB, "scrape_timeout": "50s",
                            "static_configs": [{"targets": [instance]}]}],
    }  # fmt: skip
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    base = f"http://127.0.0.1:{prom_port}"
    log = (work / "prometheus.log").open("w")
    process = subprocess.Popen(
        [prometheus, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={tsdb}",
         "--storage.tsdb.retention.time=30d", f"--web.listen-address=127.0.0.1:{prom_port}",
         "--query.max-samples=500000000"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait(lambda: get(f"{base}/api/v1/status/buildinfo") is not None, 300, "Prometheus")
        return measure(args, base, process.pid, functions)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        log.close()


def measure(
    args: argparse.Namespace, base: str, pid: int, functions: list[Function]
) -> dict[str, Any]:
    durations: dict[str, dict[str, float]] = {}  # group -> last evaluation -> seconds
    intervals: dict[str, float] = {}
    peak_rss = 0.0
    end = time.monotonic() + args.minutes * 60
    while time.monotonic() < end:
        for group in get(f"{base}/api/v1/rules")["data"]["groups"]:
            intervals[group["name"]] = group["interval"]
            if group["lastEvaluation"].startswith("0001"):
                continue
            durations.setdefault(group["name"], {})[group["lastEvaluation"]] = group[
                "evaluationTime"
            ]
        peak_rss = max(peak_rss, rss_mb(pid))
        time.sleep(5)

    rules = yaml.safe_load(args.rules.read_text())["groups"]
    groups = []
    for group in rules:
        read = 0
        for rule in group["rules"]:
            stats = query(base, rule["expr"], stats=True)["stats"]["samples"]
            read += stats["totalQueryableSamples"]
        evaluations = sorted(durations.get(group["name"], {}).items())[1:]  # skip the first
        values = [seconds for _, seconds in evaluations]
        interval = intervals[group["name"]]
        median = statistics.median(values) if values else float("nan")
        groups.append({"group": group["name"], "interval_s": interval, "evaluations": len(values),
                       "median_s": median, "share": median / interval,
                       "samples_per_evaluation": read})  # fmt: skip

    recorded = query(base, 'count(last_over_time({__name__=~"mudbase_function:.+"}[10m]))')
    series = float(recorded["result"][0]["value"][1]) if recorded["result"] else 0.0
    alerts = query(base, 'ALERTS{alertname=~"MudbaseFunction.+"}')["result"]
    by_function: dict[str, set[tuple[str, str, str]]] = {}
    for alert in alerts:
        labels = alert["metric"]
        by_function.setdefault(labels["function"], set()).add(
            (labels["alertname"], labels["severity"], labels["alertstate"])
        )
    incidents = [f for f in functions if f.kind == "incident"]
    missing = [
        f"f{f.index:05d}"
        for f in incidents
        if not {(a, s, "firing") for a, s in INCIDENT_ALERTS}
        <= by_function.get(f"f{f.index:05d}", set())
    ]
    noisy = sorted(
        name for name in by_function if name not in {f"f{f.index:05d}" for f in incidents}
    )
    return {"functions": len(functions), "step_s": args.step, "groups": groups,
            "peak_rss_mb": peak_rss, "recorded_series_per_function": series / len(functions),
            "incidents": len(incidents), "incidents_missing_a_page": missing,
            "other_functions_alerting": noisy}  # fmt: skip


def table(result: dict[str, Any]) -> str:
    rows = [
        "| functions | group (interval) | evaluation time, median | share of interval | "
        "samples read per evaluation | Prometheus peak RSS | recorded series per function |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in result["groups"]:
        rows.append(
            f"| {result['functions']:,} ({result['step_s']} s samples) | `{g['group']}` "
            f"({g['interval_s']:g} s) | {g['median_s']:.3f} s ({g['evaluations']} evaluations) "
            f"| {g['share']:.1%} | {g['samples_per_evaluation']:,} | "
            f"{result['peak_rss_mb']:.0f} MB | {result['recorded_series_per_function']:.1f} |"
        )
    rows.append("")
    rows.append(
        f"Incident functions: {result['incidents']}, missing a page: "
        f"{len(result['incidents_missing_a_page'])}; other functions with any alert: "
        f"{len(result['other_functions_alerting'])}."
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--step", type=int, default=60, help="seconds between samples")
    parser.add_argument("--minutes", type=float, default=12, help="live evaluation time")
    parser.add_argument(
        "--raw-history", type=int, default=3600,
        help="seconds of raw-series history to backfill (the rules read raw series over 5m)",
    )  # fmt: skip
    parser.add_argument("--rules", type=Path, default=RULES)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", action="store_true", help="print JSON, not markdown")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rules-"))
    try:
        result = run(args, work)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2) if args.json else table(result))
    if result["incidents_missing_a_page"] or result["other_functions_alerting"]:
        print(json.dumps({k: result[k] for k in ("incidents_missing_a_page",
                          "other_functions_alerting")}), file=sys.stderr)  # fmt: skip
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
