"""What the shipped alert rules cost the real Prometheus, whether they alert right, and how
long a page takes.

    .venv/bin/python bench/rules.py --functions 1000 --minutes 25
    .venv/bin/python bench/rules.py --functions 10000 --step 120 --minutes 20

Three days of synthetic history for N functions are written as OpenMetrics and turned into TSDB
blocks with `promtool tsdb create-blocks-from openmetrics`: per function the raw series the
exporter serves (the stats gauges, the execution counters, the objective), and what three days
of running the rules would have left: each function's merged counts and its 1m blocks (for the
windows up to 1h) and 5m blocks (for the longer windows). The raw series are backfilled for the
last hour only by default (`--raw-history`, seconds): the rules read them instantly, and three
days of them at 10,000 functions are tens of gigabytes of text. Then Debian's Prometheus starts
on 127.0.0.1 in a temporary directory with the shipped rule file unchanged, scrapes this
script's live continuation of the same history, evaluates for some minutes, and the script
prints a markdown table: per rule group the median evaluation time against its interval, the
samples one evaluation reads (each rule's query run once with `stats=all`), Prometheus' peak RSS
and the recorded series per function; then it checks that every incident function pages and no
other function has any function alert, pending or firing; and it reports the time to page.

Functions, by index: 1 in 100 has an incident (30% failures for the last 6 hours and on); 1 in
100 has a live incident (50% failures from 2 minutes after Prometheus starts, after three
healthy days: the time from its start to the page is measured, against what continuous windows
give); the others are healthy (0.1%), slow burns (0.5% against the 99% objective), functions
whose counts drop to 0 (a recreated function, retention) a day ago, low traffic (one execution
in 6 hours, half of them failing), failing polls (a 2-hour hole in every series) or not running
(counts that never move). The temporary directory is removed afterwards (`--keep` keeps it).
"""

import argparse
import dataclasses
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "mudbase-rules.yml"
sys.path.insert(0, str(ROOT))

from bench.common import serve_metrics

HISTORY = 3 * 86400
LIVE_INCIDENT_DELAY = 120.0  # seconds after Prometheus starts
JOB = "mudbase"
KINDS = ("healthy", "slow_burn", "stats_reset", "low_traffic", "poll_hole", "not_running")
PAGE = "MudbaseFunctionSuccessRateLow"


@dataclass(frozen=True)
class Function:
    """One synthetic function: cumulative counts as a function of time, analytic."""

    index: int
    kind: str
    start: float  # the history's first second
    now: float  # when the history was generated (the incident started 6h before)
    live_incident_start: float = float("inf")  # set once Prometheus runs

    @property
    def name(self) -> str:
        return f"f{self.index:05d}"

    @property
    def labels(self) -> str:
        return f'project="p{self.index // 100:03d}",function="{self.name}"'

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
        if self.kind == "live_incident":
            return self.live_incident_start
        return self.now - 6 * 3600 if self.kind == "incident" else float("inf")

    @property
    def incident_ratio(self) -> float:
        return 0.5 if self.kind == "live_incident" else 0.3

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
        extra = self.rate * (self.incident_ratio - self.failure_ratio())
        extra *= max(0.0, t - self.incident_start)
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

    def blocks(self, t: float, width: float) -> tuple[float, float] | None:
        """(failures, executions) of the block of `width` seconds the rules record at t, from
        the stats gauges; None where the rules discard or miss it (a drop, a hole)."""
        if not (self.present(t) and self.present(t - width)):
            return None
        if t - width < self.reset_at <= t:
            return None  # the block that holds the drop is discarded
        (e1, f1), (e0, f0) = self.gauges(t), self.gauges(t - width)
        return f1 - f0, e1 - e0

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
        special = {0: "incident", 50: "live_incident"}
        return special.get(i % 100) or KINDS[i % len(KINDS)]

    return [Function(i, kind(i), now - HISTORY, now) for i in range(n)]


# What the rules record, backfilled as three days of running them would have left it: the
# merged counts and the 1m blocks for the last hour, the 5m blocks for three days.
MERGED = ("mudbase_function:stats_failed_executions:max", "mudbase_function:stats_executions:max")
BLOCKS_1M = (
    "mudbase_function:failed_executions:increase1m",
    "mudbase_function:executions:increase1m",
)
SUMS_30M = (  # the 1h window adds the one of 30 minutes ago
    "mudbase_function:failed_executions:increase30m",
    "mudbase_function:executions:increase30m",
)
BLOCKS_5M = (
    "mudbase_function:failed_executions:increase5m",
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
    end = int(functions[0].now) // 300 * 300
    start = end - HISTORY
    raw_times = [t for t in range(start, end, step) if t >= end - raw_history]
    minutes = [t for t in range(start, end, 60) if t >= end - raw_history]
    five_minutes = range(start, end, 300)  # the 5m group's points, on 5-minute boundaries
    common = f'instance="{instance}",job="{JOB}",'
    recorded = (*MERGED, *BLOCKS_1M, *SUMS_30M, *BLOCKS_5M)
    families = {**TYPES, **dict.fromkeys(recorded, "gauge")}
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
        series_of = f'{{job="{JOB}",{f.labels}}}'  # recorded per function: no instance
        merged: dict[str, list[str]] = {family: [] for family in MERGED}
        for t in (t for t in minutes if f.present(t)):
            for family, value in zip(MERGED, f.gauges(t)[::-1], strict=True):
                merged[family].append(f"{family}{series_of} {value:.10g} {t}\n")
        for family, points in merged.items():
            files[family].write("".join(points))
            samples += len(points)
        for names, times, width in (
            (BLOCKS_1M, minutes, 60),
            (SUMS_30M, minutes, 1800),
            (BLOCKS_5M, five_minutes, 300),
        ):
            blocks = [(t, f.blocks(t, width)) for t in times]
            for k, family in enumerate(names):
                points = [
                    f"{family}{series_of} {v[k]:.6g} {t}\n" for t, v in blocks if v is not None
                ]
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
        self.server = serve_metrics(lambda: self.render(time.time()).encode(), port)

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

    target = LiveTarget(functions, target_port)
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
        incident_start = time.time() + LIVE_INCIDENT_DELAY
        target.functions = [
            dataclasses.replace(f, live_incident_start=incident_start) for f in functions
        ]
        return measure(args, base, process.pid, target.functions)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        log.close()


def measure(
    args: argparse.Namespace, base: str, pid: int, functions: list[Function]
) -> dict[str, Any]:
    durations: dict[str, dict[str, float]] = {}  # group -> last evaluation -> seconds
    rule_times: dict[str, list[float]] = {}  # rule -> its evaluation times seen
    intervals: dict[str, float] = {}
    peak_rss = 0.0
    paged: dict[str, float] = {}  # live incident function -> when its page was first seen
    end = time.monotonic() + args.minutes * 60
    while time.monotonic() < end:
        firing = query(base, f'ALERTS{{alertname="{PAGE}",alertstate="firing"}}')["result"]
        for alert in firing:
            paged.setdefault(alert["metric"]["function"], time.time())
        for group in get(f"{base}/api/v1/rules")["data"]["groups"]:
            intervals[group["name"]] = group["interval"]
            if group["lastEvaluation"].startswith("0001"):
                continue
            durations.setdefault(group["name"], {})[group["lastEvaluation"]] = group[
                "evaluationTime"
            ]
            for rule in group["rules"]:
                rule_times.setdefault(rule["name"], []).append(rule["evaluationTime"])
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
    incidents = [f for f in functions if f.kind in ("incident", "live_incident")]
    page = time_to_page(functions, paged, args.step)
    due = [f for f in incidents if f.incident_start + page["bound_s"] < time.time()]
    paging = (PAGE, "critical", "firing")
    missing = [f.name for f in due if paging not in by_function.get(f.name, set())]
    noisy = sorted(name for name in by_function if name not in {f.name for f in incidents})
    return {"functions": len(functions), "step_s": args.step, "groups": groups,
            "peak_rss_mb": peak_rss, "recorded_series_per_function": series / len(functions),
            "incidents": len(incidents), "incidents_missing_a_page": missing,
            "other_functions_alerting": noisy,
            "time_to_page": page,
            "slowest_rules": sorted(((statistics.median(times), name) for name, times in
                                     rule_times.items()), reverse=True)[:6]}  # fmt: skip


def continuous_time_to_page(f: Function) -> float:
    """Seconds from the start of a live incident to its page with continuous windows: the
    1h and 5m failure ratios both above 14.4x the 1% budget, held for the alert's 2m `for`.
    The history before the incident is healthy, so each window's ratio grows linearly."""
    threshold, before, during = 14.4 * 0.01, f.failure_ratio(), f.incident_ratio
    crossing = max(window * (threshold - before) / (during - before) for window in (3600, 300))
    return crossing + 120


def time_to_page(functions: list[Function], paged: dict[str, float], step: int) -> dict[str, Any]:
    """The live incidents' measured times to page against continuous windows'."""
    live = [f for f in functions if f.kind == "live_incident"]
    measured = [paged[f.name] - f.incident_start for f in live if f.name in paged]
    expected = continuous_time_to_page(live[0]) if live else float("nan")
    return {"live_incidents": len(live), "paged": len(measured),
            "median_s": statistics.median(measured) if measured else None,
            "max_s": max(measured) if measured else None, "continuous_windows_s": expected,
            "bound_s": expected + 60 + step}  # fmt: skip


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
    page = result["time_to_page"]
    rows.append(
        f"Time to page, 50% failures after three healthy days: {page['paged']} of "
        f"{page['live_incidents']} paged, median {page['median_s'] or float('nan'):.0f} s, "
        f"worst {page['max_s'] or float('nan'):.0f} s; "
        f"continuous 1h and 5m windows with the 2m `for`: {page['continuous_windows_s']:.0f} s "
        f"(bound: that plus one evaluation interval and one scrape: {page['bound_s']:.0f} s)."
    )
    slowest = ", ".join(f"{name} {seconds:.3f} s" for seconds, name in result["slowest_rules"])
    rows.append(f"Slowest rules (median evaluation): {slowest}.")
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
