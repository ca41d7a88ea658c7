"""Soak: 1,000 functions against the simulator with 10% random faults, for 10 minutes.

Runs the real exporter in this process (so it can count its own asyncio tasks) against a
simulator process on loopback, and reports RSS, open file descriptors and asyncio tasks at the
start (after the first full round) and at the end, RSS every minute, plus the polls and errors
seen. Growth beyond noise would be a leak. The request budget is lifted (1,000,000 per 15
minutes) so that every function really is polled every interval.

    .venv/bin/python bench/soak.py --targets 1000 --minutes 10 --interval 15s
"""

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import post, rss_mb, start_simulator
from exporter.app import Exporter
from exporter.config import parse_config
from exporter.logs import configure_logging

TOKEN = "soak-token-0123456789"
FAULT_KINDS: list[dict[str, object]] = [
    {"kind": "status", "status": 503},
    {"kind": "status", "status": 500},
    {"kind": "rate_limit", "retry_after": 1},
    {"kind": "rate_limit"},
    {"kind": "malformed"},
    {"kind": "wrong_types"},
    {"kind": "latency", "latency": 3},
    {"kind": "hang_body", "latency": 30},
    {"kind": "status", "status": 404},
    {"kind": "status", "status": 403},
]


def sample(label: str) -> dict[str, Any]:
    return {
        "when": label,
        "rss_mb": round(rss_mb(), 1),
        "open_fds": len(os.listdir("/proc/self/fd")),
        "asyncio_tasks": len(asyncio.all_tasks()),
        "threads": len(os.listdir("/proc/self/task")),
    }


def soak_simulator(targets: int, seed: int) -> tuple[subprocess.Popen[str], str]:
    functions = [
        {
            "project": f"p{i // 100}",
            "id": f"f{i}",
            "rate_per_minute": 30,
            "dialect": "openapi" if i % 2 else "docs",
            "initial_executions": 100,
        }
        for i in range(targets)
    ]
    return start_simulator(TOKEN, functions, seed=seed, rate_limit=0)  # the budget is lifted


def inject_faults(url: str, targets: int, ratio: float, rng: random.Random) -> int:
    victims = rng.sample(range(targets), round(targets * ratio))
    for i in victims:
        fault = {**rng.choice(FAULT_KINDS), "probability": 0.5}
        post(f"{url}/_sim/faults", {"project": f"p{i // 100}", "function": f"f{i}", **fault})
    return len(victims)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    simulator, url = soak_simulator(args.targets, args.seed)
    try:
        faulty = inject_faults(url, args.targets, args.fault_ratio, rng)
        projects: dict[str, list[str]] = {}
        for i in range(args.targets):
            projects.setdefault(f"p{i // 100}", []).append(f"f{i}")
        targets = "".join(
            f"  - {{project: {p}, functions: [{', '.join(f)}]}}\n" for p, f in projects.items()
        )
        loaded = parse_config(
            f"mudbase: {{url: '{url}', token: {TOKEN}, timeout: 2s, retries: 2, "
            "request_budget: 1000000}\n"
            f"interval: {args.interval}\nconcurrency: 32\ntargets:\n{targets}",
            "(soak)",
            {},
        )
        exporter = Exporter(loaded, ("127.0.0.1", 0))
        runner = asyncio.create_task(exporter.run())
        interval = loaded.config.interval
        await asyncio.sleep(interval + 12)  # the first full round, and a second one started
        samples = [sample("start")]
        scrape = f"http://127.0.0.1:{exporter.port}/metrics"
        deadline = time.monotonic() + args.minutes * 60
        scrape_ms = []
        while time.monotonic() < deadline:
            await asyncio.sleep(min(30.0, max(0.0, deadline - time.monotonic())))
            started = time.perf_counter()
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(scrape).read())
            scrape_ms.append((time.perf_counter() - started) * 1000)
            if len(scrape_ms) % 2 == 0:
                samples.append(sample(f"minute {len(scrape_ms) // 2}"))
        samples.append(sample("end"))
        metrics = body.decode()
        exporter.request_stop()
        await runner
        return {
            "targets": args.targets,
            "faulty_targets": faulty,
            "interval": args.interval,
            "minutes": args.minutes,
            "samples": [samples[0], samples[-1]],
            "rss_mb_by_minute": [s["rss_mb"] for s in samples[1:-1]],
            "median_scrape_ms": round(statistics.median(scrape_ms), 1),
            "polls": _value(metrics, "mudbase_exporter_poll_duration_seconds_count"),
            "poll_errors": _errors(metrics),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    finally:
        simulator.terminate()
        simulator.communicate(timeout=10)


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def _errors(text: str) -> dict[str, float]:
    errors = {}
    for line in text.splitlines():
        if line.startswith("mudbase_exporter_poll_errors_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            errors[reason] = float(line.split()[1])
    return {k: v for k, v in errors.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", default="15s")
    parser.add_argument("--fault-ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    configure_logging("error", "logfmt")
    print(json.dumps(asyncio.run(soak(args)), indent=2))


if __name__ == "__main__":
    main()
