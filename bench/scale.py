"""Scale benchmarks for the request budget, /metrics at 10,000 functions, CPU and throughput.

    .venv/bin/python bench/scale.py freshness --functions 5000 --minutes 3
    .venv/bin/python bench/scale.py mixed --listed 1000 --discovered 4000 --minutes 10
    .venv/bin/python bench/scale.py scrape --functions 10000
    .venv/bin/python bench/scale.py cpu --requests 2000

Everything runs on loopback: a simulator process (with 50-100 ms latency where noted) and the
real exporter in this process. Times are medians of repeated runs; ratios compare two things
measured in the same run. Numbers go into the README by hand, never into tests.
"""

import argparse
import asyncio
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import get_json, post, rss_mb, start_simulator
from exporter.app import Exporter
from exporter.auth import StaticToken
from exporter.client import MudbaseClient, RetryPolicy
from exporter.collector import FunctionRenderer
from exporter.config import parse_config
from exporter.executions import MIN_PAGE, PAGE_SIZE, ExecutionTotals
from exporter.logs import configure_logging
from exporter.web import ExporterHTTPServer, start_http_server

TOKEN = "bench-token-0123456789"
PER_PROJECT = 100


def bench_simulator(
    functions: int, rate_per_minute: float, latency: str, rate_limit: int | None = None
) -> tuple[subprocess.Popen[str], str]:
    specs = [
        {
            "project": f"p{i // PER_PROJECT:03d}",
            "id": f"f{i:05d}",
            "initial_executions": 50,
            "rate_per_minute": rate_per_minute,
            "dialect": "openapi" if i % 2 else "docs",
        }
        for i in range(functions)
    ]
    return start_simulator(TOKEN, specs, seed=3, latency=latency, rate_limit=rate_limit)


def project_config(url: str, functions: int, interval: str, extra: str = "") -> str:
    projects = sorted({f"p{i // PER_PROJECT:03d}" for i in range(functions)})
    targets = "".join(f"  - {{project: {p}, functions: all}}\n" for p in projects)
    return (
        f"mudbase: {{url: '{url}', token: {TOKEN}, timeout: 10s{extra}}}\n"
        f"interval: {interval}\nconcurrency: 16\ntargets:\n{targets}"
    )


async def wait_executions_tracked(exporter: Exporter, functions: int, within: float) -> None:
    """Until 95% of the functions have execution totals (a logs answer placed their cursor)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        states = exporter.state.snapshot().values()
        if sum(1 for s in states if s.executions is not None) >= 0.95 * functions:
            return
        await asyncio.sleep(1)
    raise RuntimeError("execution totals did not reach 95% of the functions in time")


def render_ms(exporter: Exporter) -> dict[str, float]:
    """Median times to render the per-function part: from nothing (every function's lines),
    and what the renderer thread does after a second of polling (the changed functions)."""
    full, incremental = [], []
    for _ in range(5):
        started = time.perf_counter()
        FunctionRenderer(exporter.state).render()
        full.append((time.perf_counter() - started) * 1000)
        exporter.functions.render()
        time.sleep(1)
        started = time.perf_counter()
        exporter.functions.render()
        incremental.append((time.perf_counter() - started) * 1000)
    return {
        "render_all_ms": round(statistics.median(full), 1),
        "render_after_1s_of_changes_ms": round(statistics.median(incremental), 1),
    }


async def wait_all_polled(exporter: Exporter, functions: int, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        states = exporter.state.snapshot().values()
        if sum(1 for s in states if s.last_success) >= functions:
            return time.monotonic() - started
        await asyncio.sleep(1)
    raise RuntimeError("not every function was polled in time")


async def freshness(args: argparse.Namespace) -> dict[str, Any]:
    simulator, url = bench_simulator(args.functions, args.rate, "0.05:0.1")
    try:
        loaded = parse_config(project_config(url, args.functions, args.interval), "(bench)", {})
        exporter = Exporter(loaded, ("127.0.0.1", 0))
        runner = asyncio.create_task(exporter.run())
        warmup = await wait_all_polled(exporter, args.functions, 180)
        post(f"{url}/_sim/requests/reset", {})
        started = time.monotonic()
        ages: list[float] = []
        while time.monotonic() - started < args.minutes * 60:
            await asyncio.sleep(10)
            now = time.time()
            states = exporter.state.snapshot().values()
            ages.append(max(now - (s.last_success or 0) for s in states))
        elapsed = time.monotonic() - started
        counts = get_json(f"{url}/_sim/state")["requests"]
        coverage = execution_coverage(exporter)
        exporter.request_stop()
        await runner
    finally:
        simulator.terminate()
        simulator.communicate(timeout=10)
    per_15m = {k: round(v * 900 / elapsed) for k, v in counts.items()}
    return {
        "functions": args.functions,
        "first_round_s": round(warmup, 1),
        "max_data_age_s": {"median": round(statistics.median(ages), 1), "max": round(max(ages), 1)},
        "requests_per_15m": per_15m,
        "total_per_15m": sum(per_15m.values()),
        "budget_per_15m": loaded.config.mudbase.request_budget,
        "execution_metrics": coverage,
        "naive_functions_at_60s": {
            "within_budget": loaded.config.mudbase.request_budget * 60 // 900,
            "within_mudbase_limit": 2000 * 60 // 900,
        },
    }


def execution_coverage(exporter: Exporter) -> dict[str, Any]:
    """How many functions have execution metrics, and the share of executions they observed."""
    totals = [s.executions for s in exporter.state.snapshot().values() if s.executions]
    observed = sum(sum(t.counts.values()) for t in totals)
    unobserved = sum(t.unobserved for t in totals)
    return {
        "functions_tracked": len(totals),
        "observed": observed,
        "unobserved": unobserved,
        "coverage": round(observed / max(1, observed + unobserved), 3),
    }


def scrape_times(url: str, count: int, gzipped: bool = False) -> list[float]:
    times = []
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
            r.read()
        times.append((time.perf_counter() - started) * 1000)
    return times


class _FixedBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def body(self, gzipped: bool = False) -> bytes:
        return self._body


async def scrape(args: argparse.Namespace) -> dict[str, Any]:
    simulator, url = bench_simulator(args.functions, 1, "0", rate_limit=0)  # budget lifted
    try:
        loaded = parse_config(
            project_config(url, args.functions, "30s", ", request_budget: 1000000"), "(bench)", {}
        )
        exporter = Exporter(loaded, ("127.0.0.1", 0))
        runner = asyncio.create_task(exporter.run())
        await wait_all_polled(exporter, args.functions, 300)
        await wait_executions_tracked(exporter, args.functions, 300)
        await asyncio.sleep(3)
        metrics = f"http://127.0.0.1:{exporter.port}/metrics"
        await asyncio.to_thread(scrape_times, metrics, 3)
        rss = rss_mb()  # the exporter's own, before this benchmark keeps a copy of the body
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(metrics).read())
        fixed = ExporterHTTPServer(
            ("127.0.0.1", 0),
            _FixedBody(body),  # type: ignore[arg-type]
            landing_page=lambda _query: b"",
            ready=lambda: True,
            reload=lambda: None,
        )
        start_http_server(fixed)
        memory_url = f"http://127.0.0.1:{fixed.server_address[1]}/metrics"
        rounds: dict[str, list[float]] = {"exporter": [], "memory": []}
        for _ in range(5):  # interleaved, so both see the same machine
            rounds["exporter"] += await asyncio.to_thread(scrape_times, metrics, 10)
            rounds["memory"] += await asyncio.to_thread(scrape_times, memory_url, 10)
        post(f"{url}/_sim/latency", {"min": 5, "max": 5})
        await asyncio.sleep(15)
        slow = await asyncio.to_thread(scrape_times, metrics, 50)
        # as Prometheus scrapes: gzip, a new state almost every time (the body is compressed
        # once per state change, on the first gzip scrape that sees it)
        gzip_times = []
        for _ in range(20):
            gzip_times += await asyncio.to_thread(scrape_times, metrics, 1, True)
            await asyncio.sleep(1.1)
        exporter_ms = statistics.median(rounds["exporter"])
        memory_ms = statistics.median(rounds["memory"])
        result = {
            "functions": args.functions,
            "body_bytes": len(body),
            "median_scrape_ms": round(exporter_ms, 2),
            "median_same_bytes_from_memory_ms": round(memory_ms, 2),
            "ratio": round(exporter_ms / memory_ms, 2),
            "median_scrape_ms_upstream_5s_latency": round(statistics.median(slow), 2),
            "ratio_5s_to_0s_latency": round(statistics.median(slow) / exporter_ms, 2),
            "median_gzip_scrape_of_a_new_state_ms": round(statistics.median(gzip_times), 2),
            "rss_mb": round(rss, 1),
            "rss_mb_at_the_end": round(rss_mb(), 1),
            **(await asyncio.to_thread(render_ms, exporter)),
        }
        fixed.shutdown()
        exporter.request_stop()
        await asyncio.wait_for(runner, 60)
        return result
    finally:
        simulator.terminate()
        simulator.communicate(timeout=10)


async def cpu(args: argparse.Namespace) -> dict[str, Any]:
    simulator, url = bench_simulator(100, 6, "0", rate_limit=0)  # budget lifted
    try:
        post(f"{url}/_sim/functions", {"project": "p000", "id": "f00001", "rate_per_minute": 6000})
        await asyncio.sleep(3)  # 300 executions: a full page of 100 for every call below
        async with httpx.AsyncClient() as http:
            client = MudbaseClient(
                url, StaticToken(SecretStr(TOKEN)), http, retry=RetryPolicy(), timeout=10
            )
            result: dict[str, Any] = {}
            for limit in (1, MIN_PAGE, PAGE_SIZE):
                result[f"limit_{limit}"] = await _cpu_per_answer(client, http, url, limit, args)
        throughput = await _throughput(url, args.concurrency)
    finally:
        simulator.terminate()
        simulator.communicate(timeout=10)
    return {**result, **throughput}


async def _cpu_per_answer(
    client: MudbaseClient, http: httpx.AsyncClient, url: str, limit: int, args: argparse.Namespace
) -> dict[str, Any]:
    """CPU of this process per logs answer of `limit` executions: a bare httpx GET, against the
    exporter's client parsing it and counting every execution in it as new (the worst case)."""
    logs = client.logs_url("p000", "f00001")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    placed = ExecutionTotals.start([], 0)

    async def bare() -> None:
        response = await http.get(logs, params={"limit": str(limit)}, headers=headers)
        response.read()

    async def exporter_poll() -> None:
        page = await client.function_logs("p000", "f00001", limit=limit)
        placed.advance(placed.new_of(page.executions), page.stats.total_executions)

    cpu_per_call: dict[str, list[float]] = {"bare_httpx_get": [], "exporter_poll": []}
    for _ in range(5):  # interleaved rounds, CPU time of this process only
        for name, call in (("bare_httpx_get", bare), ("exporter_poll", exporter_poll)):
            started = time.process_time()
            for _ in range(args.requests // 5):
                await call()
            spent = time.process_time() - started
            cpu_per_call[name].append(spent / (args.requests // 5) * 1e6)
    bare_us = statistics.median(cpu_per_call["bare_httpx_get"])
    poll_us = statistics.median(cpu_per_call["exporter_poll"])
    return {
        "cpu_us_per_bare_httpx_get": round(bare_us, 1),
        "cpu_us_per_exporter_poll": round(poll_us, 1),
        "ratio": round(poll_us / bare_us, 2),
    }


async def _throughput(url: str, concurrency: int) -> dict[str, Any]:
    """Polls per second with no budget: the exporter's own poller against one simulator."""
    loaded = parse_config(
        f"mudbase: {{url: '{url}', token: {TOKEN}, timeout: 10s, request_budget: 1000000}}\n"
        f"interval: 1h\nconcurrency: {concurrency}\n"
        "targets: [{project: p000, functions: ["
        + ", ".join(f"f{i:05d}" for i in range(100))
        + "]}]\n",
        "(bench)",
        {},
    )
    exporter = Exporter(loaded, ("127.0.0.1", 0))
    runner = asyncio.create_task(exporter.run())
    await asyncio.sleep(0.5)
    runtime = exporter._runtime
    assert runtime is not None
    keys = list(exporter.state.snapshot())
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        await asyncio.gather(*(runtime.poller.poll_once(keys[i % len(keys)]) for i in range(3000)))
        rates.append(3000 / (time.perf_counter() - started))
    exporter.request_stop()
    await runner
    return {"polls_per_second": round(statistics.median(rates)), "concurrency": concurrency}


LAST_SUCCESS = re.compile(r"^mudbase_function_last_success_timestamp_seconds\{.*\} (\S+)$", re.M)
OBSERVED = re.compile(r"^mudbase_function_observed_executions_total\{.*\} (\S+)$", re.M)
UNOBSERVED = re.compile(r"^mudbase_function_unobserved_executions_total\{.*\} (\S+)$", re.M)


def mixed_simulator(listed: int, discovered: int) -> tuple[subprocess.Popen[str], str]:
    """`listed` functions in projects l000..., `discovered` in projects d000..., 100 a project,
    every one running steadily; Mudbase's real per-IP limit; 50 to 100 ms per answer."""
    specs = [
        {
            "project": f"{prefix}{i // PER_PROJECT:03d}",
            "id": f"f{i:05d}",
            "initial_executions": 50,
            "rate_per_minute": 0.5,
            "dialect": "openapi" if i % 2 else "docs",
        }
        for prefix, count in (("l", listed), ("d", discovered))
        for i in range(count)
    ]
    return start_simulator(TOKEN, specs, seed=5, latency="0.05:0.1")


def mixed_config(url: str, listed: int, discovered: int) -> str:
    """Listed functions and discovered projects, everything else at its default."""
    lines = [f"mudbase: {{url: '{url}', token: {TOKEN}}}", "targets:"]
    for first in range(0, listed, PER_PROJECT):
        ids = ", ".join(f"f{i:05d}" for i in range(first, min(first + PER_PROJECT, listed)))
        lines.append(f"  - {{project: l{first // PER_PROJECT:03d}, functions: [{ids}]}}")
    for project in range(math.ceil(discovered / PER_PROJECT)):
        lines.append(f"  - {{project: d{project:03d}, functions: all}}")
    return "\n".join(lines) + "\n"


def start_exporter(source: Path, config: Path, port: int) -> subprocess.Popen[str]:
    """The exporter of the source tree `source` (this one, or another checkout for a
    baseline), as its own process."""
    log = config.with_suffix(".log").open("w")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        cwd=source,
        env={**os.environ, "PYTHONPATH": str(source)},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        return str(answer.read().decode())


def values(pattern: re.Pattern[str], text: str) -> list[float]:
    return [float(value) for value in pattern.findall(text)]


async def mixed(args: argparse.Namespace) -> dict[str, Any]:
    return await asyncio.to_thread(measure_mixed, args)


def measure_mixed(args: argparse.Namespace) -> dict[str, Any]:
    """Listed and discovered functions at the defaults behind Mudbase's real limit: requests,
    oldest data, 429s and logs coverage, measured from the outside (works for any checkout)."""
    functions = args.listed + args.discovered
    simulator, url = mixed_simulator(args.listed, args.discovered)
    workdir = Path(tempfile.mkdtemp(prefix="bench-mixed-"))
    config = workdir / "config.yaml"
    config.write_text(mixed_config(url, args.listed, args.discovered))
    port = free_port()
    exporter = start_exporter(Path(args.source).resolve(), config, port)
    started, ages, first_round, polled = time.monotonic(), [], None, []
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(10)
            polled = values(LAST_SUCCESS, metrics_text(port))
            if first_round is None and len(polled) == functions:
                first_round = time.monotonic() - started
            if first_round is not None:  # the oldest data, once every function has some
                ages.append(time.time() - min(polled))
        state = get_json(f"{url}/_sim/state")
        text = metrics_text(port)
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
        simulator.terminate()
        simulator.communicate(timeout=10)
    elapsed = time.monotonic() - started
    observed, unobserved = sum(values(OBSERVED, text)), sum(values(UNOBSERVED, text))
    seen = observed + unobserved
    log = config.with_suffix(".log").read_text()
    return {
        "source": args.source,
        "listed": args.listed,
        "discovered": args.discovered,
        "minutes": args.minutes,
        "functions_with_data_at_the_end": len(polled),
        "first_round_s": None if first_round is None else round(first_round),
        "poll_interval_s": _gauge(text, "mudbase_exporter_poll_interval_seconds"),
        "oldest_data_s": {
            "median": round(statistics.median(ages), 1) if ages else None,
            "worst": round(max(ages), 1) if ages else None,
            "samples": len(ages),
        },
        "requests_per_15m": {k: round(v * 900 / elapsed) for k, v in state["requests"].items()},
        "429s_from_the_limit": state["rate_limit"]["refused"],
        "logs_coverage": {
            "observed": round(observed),
            "unobserved": round(unobserved),
            "ratio": round(observed / seen, 3) if seen else None,
        },
        "listing_deadline_missed": log.count("listing exceeded its deadline"),
    }


def _gauge(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    fresh = sub.add_parser("freshness")
    fresh.add_argument("--functions", type=int, default=5000)
    fresh.add_argument("--minutes", type=float, default=3)
    fresh.add_argument("--rate", type=float, default=0.2, help="executions per function-minute")
    fresh.add_argument("--interval", default="60s")
    scraping = sub.add_parser("scrape")
    scraping.add_argument("--functions", type=int, default=10000)
    mix = sub.add_parser("mixed")
    mix.add_argument("--listed", type=int, default=1000)
    mix.add_argument("--discovered", type=int, default=4000)
    mix.add_argument("--minutes", type=float, default=10)
    mix.add_argument(
        "--source", default=str(ROOT), help="the checkout whose exporter runs (for a baseline)"
    )
    costs = sub.add_parser("cpu")
    costs.add_argument("--requests", type=int, default=2000)
    costs.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    configure_logging("error", "logfmt")
    bench = {"freshness": freshness, "scrape": scrape, "cpu": cpu, "mixed": mixed}[args.bench]
    print(json.dumps(asyncio.run(bench(args)), indent=2))


if __name__ == "__main__":
    main()
