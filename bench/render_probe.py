"""How long the renderer takes after one function changed, in the `exporter` of PYTHONPATH.

    PYTHONPATH=CHECKOUT .venv/bin/python bench/render_probe.py --functions 10000 --big-project 10000

`bench/scale.py scrape` runs it with the checkout it measures (this one, or another for a
"before"): it uses only the state store, the renderer and the cached exposition, whose
interfaces that code shares. The layout of the scrape benchmark (`--functions` in projects of
100, `--big-project` more in one project) is built in a state store directly, every function
with stats and execution totals (a histogram each), and rendered once. Then one function at a
time changes and the per-function part is rendered again as the renderer thread does it (the
chunks, their deflate segments, the gzip trailer's CRC), once per change; the times are the
medians over the changes, in a function of the big project and in a function of a project of
100. Prints JSON.
"""

import argparse
import json
import statistics
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from exporter.collector import FunctionRenderer
from exporter.executions import ExecutionTotals
from exporter.exposition import CachedExposition
from exporter.state import StateStore
from exporter.targets import FunctionInfo, FunctionSettings, TargetKey
from exporter.upstream import Execution, FunctionStats

PER_PROJECT = 100  # as bench/scale.py's layout


def observed() -> ExecutionTotals:
    """Totals with a few executions of each outcome, so every function has a histogram."""
    first = Execution("e0", datetime.fromtimestamp(100, UTC), 0.1, True, "http", "trigger")
    totals = ExecutionTotals(placed=False).place([first], 40)
    seen = [
        Execution(f"e{i}", datetime.fromtimestamp(100 + i, UTC), 0.02 * i, i % 3 != 0, "http", "x")
        for i in range(1, 6)
    ]
    return totals.advance(seen, 45)


def stats(total: int) -> FunctionStats:
    return FunctionStats(
        total_executions=total,
        successful_executions=total - 2,
        failed_executions=2,
        success_ratio=(total - 2) / total,
        avg_execution_seconds=0.12,
        last_run_timestamp=1.7e9,
    )


def layout_state(functions: int, big_project: int) -> StateStore:
    keys = [TargetKey(f"p{i // PER_PROJECT:03d}", f"f{i:05d}") for i in range(functions)]
    keys += [TargetKey("big", f"f{functions + i:05d}") for i in range(big_project)]
    projects = sorted({key.project for key in keys})
    state = StateStore()
    state.set_targets({}, discovered_projects=projects)
    settings, totals = FunctionSettings(slo_objective=0.99), observed()
    for project in projects:
        found = {
            key: (settings, FunctionInfo(key.function, "http", True))
            for key in keys
            if key.project == project
        }
        state.sync_project(project, found)
        for key in found:
            state.record_success(key, stats(45), 1000.0, totals)
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=10000)
    parser.add_argument("--big-project", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=15)
    args = parser.parse_args()
    state = layout_state(args.functions, args.big_project)
    exposition = CachedExposition(
        FunctionRenderer(state).render_parts, lambda: state.generation, CollectorRegistry()
    )
    started = time.perf_counter()
    size = sum(map(len, exposition.pieces()))
    result: dict[str, object] = {
        "functions": args.functions + args.big_project,
        "plain_bytes": size,
        "first_render_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    where = {"big_project": ("big", args.functions), "project_of_100": ("p001", PER_PROJECT)}
    for name, (project, first) in where.items():
        if project == "big" and not args.big_project:
            continue
        times = []
        for change in range(args.changes):
            key = TargetKey(project, f"f{first + change * 37 % PER_PROJECT:05d}")
            state.record_success(key, stats(46 + change), 2000.0 + change)
            started = time.perf_counter()
            exposition.pieces(gzipped=True)
            times.append((time.perf_counter() - started) * 1000)
        result[f"render_after_one_change_in_{name}_ms"] = {
            "median": round(statistics.median(times), 1),
            "min": round(min(times), 1),
            "max": round(max(times), 1),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
