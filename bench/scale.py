"""Scale benchmarks for the request budget, /metrics at 10,000 functions, CPU and throughput.

    .venv/bin/python bench/scale.py freshness --functions 5000 --minutes 3
    .venv/bin/python bench/scale.py mixed --listed 1000 --discovered 4000 --minutes 10
    .venv/bin/python bench/scale.py scrape --functions 10000 [--big-project 10000] [--source DIR]
    .venv/bin/python bench/scale.py status-page --functions 10000 [--source DIR]
    .venv/bin/python bench/scale.py cpu --requests 2000
    .venv/bin/python bench/scale.py edges --discovered 3000 --big-project --latency 2
    .venv/bin/python bench/scale.py edges --listed 106 --failing 0.1 --time-scale 10

Everything runs on loopback: a simulator process (with 50-100 ms latency where noted) and the
real exporter, in this process or (scrape, mixed, status-page) as its own process, that of
this checkout or of `--source`. `scrape` compares the exporter's /metrics with a baseline
process serving the same bytes from memory, reads the exporter's RSS and CPU time from /proc,
and times renders after one change with `bench/render_probe.py`. Times are medians of
repeated runs; ratios compare two things measured in the same run. Numbers go into
docs/benchmarks.md by hand, never into tests.
"""

import argparse
import asyncio
import gzip
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (
    cpu_seconds,
    get_json,
    post,
    rss_mb,
    start_fixed_server,
    start_simulator,
)
from exporter.app import Exporter
from exporter.auth import StaticToken
from exporter.client import MudbaseClient, RetryPolicy
from exporter.config import parse_config
from exporter.durations import parse_duration
from exporter.executions import MIN_PAGE, PAGE_SIZE, ExecutionTotals
from exporter.gzipstream import LEVEL as GZIP_LEVEL
from exporter.logs import configure_logging

TOKEN = "bench-token-0123456789"
PER_PROJECT = 100


def layout(functions: int, big_project: int = 0) -> list[tuple[str, str]]:
    """(project, function) of every function: `functions` in projects of 100 (p000, ...),
    then `big_project` more in one project, `big`."""
    small = [(f"p{i // PER_PROJECT:03d}", f"f{i:05d}") for i in range(functions)]
    return small + [("big", f"f{functions + i:05d}") for i in range(big_project)]


def bench_simulator(
    functions: list[tuple[str, str]],
    rate_per_minute: float,
    latency: str,
    rate_limit: int | None = None,
) -> tuple[subprocess.Popen[str], str]:
    specs = [
        {
            "project": project,
            "id": function,
            "initial_executions": 50,
            "rate_per_minute": rate_per_minute,
            "dialect": "openapi" if i % 2 else "docs",
        }
        for i, (project, function) in enumerate(functions)
    ]
    return start_simulator(TOKEN, specs, seed=3, latency=latency, rate_limit=rate_limit)


def project_config(
    url: str, functions: list[tuple[str, str]], interval: str, extra: str = "", more: str = ""
) -> str:
    """Every project of `functions` discovered (`functions: all`); `extra` goes into the
    mudbase settings, `more` is further top-level keys."""
    projects = sorted({project for project, _ in functions})
    targets = "".join(f"  - {{project: {p}, functions: all}}\n" for p in projects)
    return (
        f"mudbase: {{url: '{url}', token: {TOKEN}, timeout: 10s{extra}}}\n{more}"
        f"interval: {interval}\nconcurrency: 16\ntargets:\n{targets}"
    )


async def wait_all_polled(exporter: Exporter, functions: int, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        states = exporter.state.snapshot().values()
        if sum(1 for s in states if s.last_success) >= functions:
            return time.monotonic() - started
        await asyncio.sleep(1)
    raise RuntimeError("not every function was polled in time")


async def freshness(args: argparse.Namespace) -> dict[str, Any]:
    functions = layout(args.functions)
    simulator, url = bench_simulator(functions, args.rate, "0.05:0.1")
    try:
        loaded = parse_config(project_config(url, functions, args.interval), "(bench)", {})
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


def fetch(url: str, gzipped: bool = False) -> bytes:
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
        return bytes(r.read())


def scrape_times(url: str, count: int, gzipped: bool = False) -> list[float]:
    """Milliseconds per scrape, the answer read (and dropped) in pieces of 1 MB."""
    times = []
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
            while r.read(1 << 20):
                pass
        times.append((time.perf_counter() - started) * 1000)
    return times


def interleaved(
    urls: dict[str, str], rounds: int, per_round: int, gzipped: bool
) -> dict[str, float]:
    """Median ms per scrape of each URL, in alternate rounds so both see the same machine."""
    times: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(rounds):
        for name, url in urls.items():
            times[name] += scrape_times(url, per_round, gzipped)
    return {name: statistics.median(spent) for name, spent in times.items()}


def function_part(gzipped: bytes) -> bytes:
    text = gzip.decompress(gzipped)
    return text[: text.find(b"# HELP mudbase_exporter_")]


def gzip_apart(urls: dict[str, str], scrapes: int, gap: float) -> dict[str, Any]:
    """Gzip scrapes `gap` seconds apart, as Prometheus scrapes while polls change the state:
    the exporter's times (all, and those whose answer showed a state not scraped before) and
    the baseline's in the same moments."""
    exporter: list[float] = []
    fresh: list[float] = []
    baseline: list[float] = []
    previous = b""
    for _ in range(scrapes):
        time.sleep(gap)
        started = time.perf_counter()
        body = fetch(urls["exporter"], gzipped=True)
        exporter.append((time.perf_counter() - started) * 1000)
        baseline += scrape_times(urls["baseline"], 1, gzipped=True)
        current = function_part(body)  # outside the timing
        if current != previous:
            fresh.append(exporter[-1])
        previous = current
    return {
        "exporter_ms": round(statistics.median(exporter), 2),
        "baseline_ms": round(statistics.median(baseline), 2),
        "ratio": round(statistics.median(exporter) / statistics.median(baseline), 2),
        "exporter_ms_new_state_only": round(statistics.median(fresh), 2) if fresh else None,
        "answers_with_a_new_state": f"{len(fresh)}/{scrapes}",
        "max_exporter_ms": round(max(exporter), 2),
    }


def concurrent_rss(url: str, pid: int, scrapers: int, each: int) -> dict[str, float]:
    """The exporter's RSS while `scrapers` clients scrape plain at once, `each` times each:
    its peak (sampled every 10 ms) and what it keeps 2 s after."""
    peak, done = [rss_mb(pid)], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(rss_mb(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = [threading.Thread(target=scrape_times, args=(url, each)) for _ in range(scrapers)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    done.set()
    sampler.join()
    time.sleep(2)
    return {"peak": round(max(peak), 1), "after": round(rss_mb(pid), 1)}


def wait_tracked_from_outside(metrics: str, functions: int, within: float) -> float:
    """Until every function has been polled and 95% have execution totals, read from /metrics."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        text = fetch(metrics).decode()
        polled, tracked = len(LAST_SUCCESS.findall(text)), len(UNOBSERVED.findall(text))
        if polled >= functions and tracked >= 0.95 * functions:
            return time.monotonic() - started
        time.sleep(5)
    raise RuntimeError("not every function was polled and tracked in time")


def ratio(exporter: float, baseline: float) -> dict[str, float]:
    return {
        "exporter_ms": round(exporter, 2),
        "baseline_ms": round(baseline, 2),
        "ratio": round(exporter / baseline, 2),
    }


async def scrape(args: argparse.Namespace) -> dict[str, Any]:
    return await asyncio.to_thread(measure_scrape, args)


def measure_scrape(args: argparse.Namespace) -> dict[str, Any]:
    """/metrics of the exporter as its own process at `functions` functions (and one project
    of `big_project` more) against a baseline process serving the same bytes from memory;
    this process only scrapes. Timed twice: while the exporter polls with the budget lifted
    (hundreds of polls a second, which the warm-up needs, every function changing), then
    after a reload to the default budget (a poll every 0.6 s, each listing changing one
    project), as against Mudbase. Medians of interleaved rounds, ratios within this run, the
    exporter's RSS and its CPU share in each phase while nothing scrapes; and, before the
    exporter starts, the renders after one change of the same layout (render_probe.py)."""
    source = Path(args.source).resolve()
    renders = render_after_one_change(source, args.functions, args.big_project)
    functions = layout(args.functions, args.big_project)
    simulator, url = bench_simulator(functions, 1, "0", rate_limit=0)  # budget lifted
    workdir = Path(tempfile.mkdtemp(prefix="bench-scrape-"))
    config = workdir / "config.yaml"
    config.write_text(project_config(url, functions, "30s", ", request_budget: 1000000"))
    port = free_port()
    exporter = start_exporter(source, config, port)
    metrics = f"http://127.0.0.1:{port}/metrics"
    baseline: subprocess.Popen[str] | None = None
    try:
        wait_for_answer(metrics, 60)
        warmup = wait_tracked_from_outside(metrics, len(functions), 600)
        time.sleep(3)
        cpu_busy = cpu_share(exporter.pid, CPU_WINDOW)
        plain, zipped = fetch(metrics), fetch(metrics, gzipped=True)
        baseline, baseline_url = start_fixed_server(plain, zipped)
        urls = {"exporter": metrics, "baseline": f"{baseline_url}/metrics"}
        busy = scrape_timings(urls)
        config.write_text(project_config(url, functions, "30s"))  # the default budget
        post(f"http://127.0.0.1:{port}/-/reload", {})
        time.sleep(20)  # the bucket drained to the default budget's pace
        cpu_at_the_budget = cpu_share(exporter.pid, CPU_WINDOW)
        at_the_budget = scrape_timings(urls)
        memory = scrape_memory(urls["exporter"], exporter.pid)
        post(f"{url}/_sim/latency", {"min": 5, "max": 5})
        time.sleep(15)
        slow = statistics.median(scrape_times(metrics, 20))
    finally:
        for process in (exporter, baseline):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
        simulator.terminate()
        simulator.communicate(timeout=10)
    one_member = zlib.compress(plain, GZIP_LEVEL, wbits=16 + zlib.MAX_WBITS)
    return {
        "source": str(source),
        "functions": len(functions),
        "big_project": args.big_project,
        "first_round_and_executions_s": round(warmup),
        "plain_bytes": len(plain),
        "gzip_bytes": len(zipped),
        "gzip_bytes_as_one_stream": len(one_member),
        "renders_in_process": renders,
        f"cpu_share_{CPU_WINDOW:.0f}s_budget_lifted": cpu_busy,
        f"cpu_share_{CPU_WINDOW:.0f}s_default_budget": cpu_at_the_budget,
        "polling_with_the_budget_lifted": busy,
        "polling_at_the_default_budget": at_the_budget,
        **memory,
        "plain_median_ms_while_upstream_takes_5s": round(slow, 2),
    }


CPU_WINDOW = 60.0  # seconds


def cpu_share(pid: int, seconds: float) -> float:
    """The share of one core the process `pid` used (user and system) over `seconds`."""
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return round((cpu_seconds(pid) - before) / (time.monotonic() - started), 3)


def wait_quiet(pid: int, within: float) -> None:
    """Until the process `pid` uses less than 5% of a core over 2 s."""
    started = time.monotonic()
    while cpu_share(pid, 2.0) >= 0.05:
        if time.monotonic() - started > within:
            raise RuntimeError("the exporter did not go quiet in time")


def render_after_one_change(source: Path, functions: int, big_project: int) -> Any:
    """bench/render_probe.py's answer, with the exporter package of `source`."""
    probe = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "render_probe.py"),
            f"--functions={functions}",
            f"--big-project={big_project}",
        ],
        env={**os.environ, "PYTHONPATH": str(source)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(probe.stdout)


def scrape_timings(urls: dict[str, str]) -> dict[str, Any]:
    plain = interleaved(urls, 5, 10, gzipped=False)
    back_to_back = interleaved(urls, 5, 20, gzipped=True)
    return {
        "plain": ratio(plain["exporter"], plain["baseline"]),
        "gzip_back_to_back": ratio(back_to_back["exporter"], back_to_back["baseline"]),
        "gzip_1.1s_apart": gzip_apart(urls, 20, 1.1),
    }


def scrape_memory(url: str, pid: int) -> dict[str, Any]:
    scrape_times(url, 100)
    scrape_times(url, 100, gzipped=True)
    rss_after = rss_mb(pid)
    return {
        "rss_mb_after_100_plain_and_100_gzip": round(rss_after, 1),
        "rss_mb_16_concurrent_plain_scrapers": concurrent_rss(url, pid, 16, 5),
    }


def wait_for_answer(url: str, within: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            fetch(url)
        except OSError:
            time.sleep(0.5)
        else:
            return
    raise RuntimeError(f"{url} did not answer in time")


async def cpu(args: argparse.Namespace) -> dict[str, Any]:
    simulator, url = bench_simulator(layout(100), 6, "0", rate_limit=0)  # budget lifted
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
    placed = ExecutionTotals(placed=False).place([], 0)

    async def bare() -> None:
        response = await http.get(logs, params={"limit": str(limit)}, headers=headers)
        response.read()

    async def exporter_poll() -> None:
        page = await client.function_logs("p000", "f00001", limit=limit)
        placed.advance(placed.cursor.new_of(page.executions), page.stats.total_executions)

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
    poller = exporter._poller
    assert poller is not None
    keys = list(exporter.state.snapshot())
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        await asyncio.gather(*(poller.poll_once(keys[i % len(keys)]) for i in range(3000)))
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


def stop(exporter: subprocess.Popen[str], simulator: subprocess.Popen[str]) -> None:
    """End an exporter process and its simulator."""
    exporter.terminate()
    exporter.wait(timeout=30)
    simulator.terminate()
    simulator.communicate(timeout=10)


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
        stop(exporter, simulator)
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


async def status_page(args: argparse.Namespace) -> dict[str, Any]:
    return await asyncio.to_thread(measure_status_page, args)


def measure_status_page(args: argparse.Namespace) -> dict[str, Any]:
    """The status page of the exporter (this checkout or `--source`) as its own process, with
    `functions` functions in projects of 100, every one listed once (budget lifted, interval
    1h, no execution metrics: then the state stays as it is). Views of `/` timed from
    outside: with the state unchanged between them, filtered, and each right after a reload
    (which moves the state's generation, so the ranking is redone). Medians."""
    source = Path(args.source).resolve()
    functions = layout(args.functions)
    simulator, url = bench_simulator(functions, 0, "0", rate_limit=0)  # budget lifted
    config = Path(tempfile.mkdtemp(prefix="bench-status-")) / "config.yaml"
    mudbase = ", request_budget: 1000000"
    config.write_text(project_config(url, functions, "1h", mudbase, "execution_metrics: false\n"))
    port = free_port()
    exporter = start_exporter(source, config, port)
    page = f"http://127.0.0.1:{port}/"
    try:
        wait_for_answer(f"http://127.0.0.1:{port}/-/ready", 600)
        wait_quiet(exporter.pid, 300)  # the first round's logs requests are done too
        scrape_times(page, 1)  # the first view of the last state
        unchanged = scrape_times(page, args.views)
        filtered = scrape_times(f"{page}?q=p001/", args.views)
        after_a_change = []
        for _ in range(args.views):
            post(f"http://127.0.0.1:{port}/-/reload", {})
            after_a_change += scrape_times(page, 1)
    finally:
        stop(exporter, simulator)
    return {
        "source": str(source),
        "functions": len(functions),
        "views": args.views,
        "view_ms_state_unchanged": round(statistics.median(unchanged), 1),
        "view_ms_filtered_state_unchanged": round(statistics.median(filtered), 1),
        "view_ms_after_a_change": round(statistics.median(after_a_change), 1),
    }


def _gauge(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


# -- the planner at its edges ---------------------------------------------------------------


@dataclass(frozen=True)
class TimeScale:
    """Production seconds per benchmark second: intervals, timeouts and the simulator's
    window shrink by it, and the exporter's budget per (real) 15 minutes grows by it, so that
    the requests per interval, per window of the simulator, are those of production."""

    factor: float = 1.0

    def seconds(self, production: float) -> float:
        return production / self.factor

    def duration(self, production: float) -> str:
        return f"{production / self.factor:g}s"


@dataclass(frozen=True)
class Edge:
    """One scenario: functions listed in projects l000..., discovered ones in d000... (100 a
    project, or `big_project` in one), the simulator's latency, failing share and limit."""

    listed: int = 0
    discovered: int = 0
    big_project: bool = False
    latency: str = "0.05:0.1"
    failing: float = 0.0
    sim_limit: int = 2000
    rate_per_minute: float = 0.5
    max_age: str = "10m"


def edge_specs(edge: Edge) -> list[dict[str, Any]]:
    def project(prefix: str, i: int) -> str:
        return "dbig" if prefix == "d" and edge.big_project else f"{prefix}{i // PER_PROJECT:03d}"

    return [
        {
            "project": project(prefix, i),
            "id": f"f{i:05d}",
            "initial_executions": 50,
            "rate_per_minute": edge.rate_per_minute,
            "dialect": "openapi" if i % 2 else "docs",
        }
        for prefix, count in (("l", edge.listed), ("d", edge.discovered))
        for i in range(count)
    ]


def edge_config(url: str, edge: Edge, scale: TimeScale, timeout: float = 10) -> str:
    """Everything at its default, in production time divided by the scale."""
    specs = edge_specs(edge)
    listed: dict[str, list[str]] = {}
    for spec in specs:
        if spec["project"].startswith("l"):
            listed.setdefault(spec["project"], []).append(spec["id"])
    discovered = sorted({s["project"] for s in specs if s["project"].startswith("d")})
    lines = [
        f"mudbase: {{url: '{url}', token: {TOKEN}, timeout: {scale.duration(timeout)}, "
        f"request_budget: {round(BUDGET * scale.factor)}}}",
        f"interval: {scale.duration(60)}",
        f"max_age: {scale.duration(parse_duration(edge.max_age))}",
        "targets:",
        *(f"  - {{project: {p}, functions: [{', '.join(ids)}]}}" for p, ids in listed.items()),
        *(f"  - {{project: {p}, functions: all}}" for p in discovered),
    ]
    return "\n".join(lines) + "\n"


BUDGET = 1600  # the default request budget per 15 minutes
UP = re.compile(r'^mudbase_function_up\{function="([^"]*)",project="([^"]*)"\} (\S+)$', re.M)
LAST_SUCCESS_OF = re.compile(
    r'^mudbase_function_last_success_timestamp_seconds\{function="([^"]*)",project="([^"]*)"\}'
    r" (\S+)$",
    re.M,
)
PLACED = re.compile(
    r'^mudbase_function_execution_duration_seconds_count\{function="[^"]*",project="d', re.M
)


@dataclass
class EdgeRun:
    """What was seen from outside, sampled every few seconds once every function had data."""

    ages: list[tuple[float, float, float]] = field(default_factory=list)  # (t, all, listed)
    most_down: int = 0
    intervals: list[float] = field(default_factory=list)

    def sample(self, text: str, started: float) -> None:
        now = time.time()
        successes = [(p, float(v)) for _, p, v in LAST_SUCCESS_OF.findall(text)]
        listed = [now - v for p, v in successes if p.startswith("l")]
        self.ages.append(
            (time.monotonic() - started, now - min(v for _, v in successes), max(listed, default=0))
        )
        self.most_down = max(self.most_down, sum(1 for *_, v in UP.findall(text) if v == "0.0"))
        interval = _gauge(text, "mudbase_exporter_poll_interval_seconds")
        if interval is not None:
            self.intervals.append(interval)

    def summary(self, scale: TimeScale) -> dict[str, Any]:
        """In production seconds: worst ages in each half of the run (growing or not)."""
        half = len(self.ages) // 2

        def worst(part: list[tuple[float, float, float]], column: int) -> float:
            return round(max((a[column] for a in part), default=0) * scale.factor, 1)

        return {
            "poll_interval_s": {
                "first": round(self.intervals[0] * scale.factor, 1) if self.intervals else None,
                "last": round(self.intervals[-1] * scale.factor, 1) if self.intervals else None,
                "most": round(max(self.intervals) * scale.factor, 1) if self.intervals else None,
            },
            "worst_age_s_first_half_second_half": [
                worst(self.ages[:half], 1),
                worst(self.ages[half:], 1),
            ],
            "listed_worst_age_s_first_half_second_half": [
                worst(self.ages[:half], 2),
                worst(self.ages[half:], 2),
            ],
            "most_functions_down_at_once": self.most_down,
            "samples": len(self.ages),
        }


async def edges(args: argparse.Namespace) -> dict[str, Any]:
    return await asyncio.to_thread(measure_edges, args)


def measure_edges(args: argparse.Namespace) -> dict[str, Any]:
    """One edge scenario against the simulator enforcing its limit per client IP, the exporter
    (this checkout or `--source`) as its own process, measured from outside: its /metrics and
    the simulator's request counts. Times and counts are given in production time."""
    scale = TimeScale(args.time_scale)
    edge = Edge(
        listed=args.listed,
        discovered=args.discovered,
        big_project=args.big_project,
        latency=args.latency,
        failing=args.failing,
        sim_limit=args.sim_limit,
        rate_per_minute=args.rate * scale.factor,
        max_age=args.max_age,
    )
    functions = edge.listed + edge.discovered
    simulator, url = start_simulator(
        TOKEN,
        edge_specs(edge),
        seed=5,
        latency=edge.latency,
        rate_limit=edge.sim_limit,
        rate_limit_window=scale.duration(900),
    )
    if edge.failing:
        fault = {"kind": "status", "status": 500, "probability": edge.failing}
        post(f"{url}/_sim/faults", {"project": "*", "function": "*", **fault})
    workdir = Path(tempfile.mkdtemp(prefix="bench-edges-"))
    config = workdir / "config.yaml"
    config.write_text(edge_config(url, edge, scale))
    port = free_port()
    exporter = start_exporter(Path(args.source).resolve(), config, port)
    run, reloads, first_round = EdgeRun(), 0, None
    started = counted_from = time.monotonic()
    try:
        while time.monotonic() - started < scale.seconds(args.minutes * 60):
            time.sleep(scale.seconds(args.sample))
            text = metrics_text(port)
            if first_round is None and len(LAST_SUCCESS.findall(text)) >= functions:
                first_round = time.monotonic() - started
                post(f"{url}/_sim/requests/reset", {})  # counted from here
                counted_from = time.monotonic()
            if first_round is not None:
                run.sample(text, started)
            if args.reload_every and first_round is not None:
                due = (time.monotonic() - counted_from) // scale.seconds(args.reload_every)
                if due > reloads:
                    reloads += 1
                    config.write_text(edge_config(url, edge, scale, timeout=9 + reloads % 2))
                    post(f"http://127.0.0.1:{port}/-/reload", {})
        state = get_json(f"{url}/_sim/state")
        text = metrics_text(port)
    finally:
        stop(exporter, simulator)
    log = config.with_suffix(".log").read_text()
    production_15m = scale.seconds(900)
    counted = time.monotonic() - counted_from  # from the first round's end, else the start
    return {
        "source": args.source,
        "time_scale": scale.factor,
        "listed": edge.listed,
        "discovered": edge.discovered,
        "one_project": edge.big_project,
        "latency_s": edge.latency,
        "failing": edge.failing,
        "minutes": args.minutes,
        "first_round_s": None if first_round is None else round(first_round * scale.factor),
        "functions_with_data_at_the_end": len(LAST_SUCCESS.findall(text)),
        **run.summary(scale),
        "requests_per_15m": {
            k: round(v * production_15m / counted) for k, v in state["requests"].items()
        },
        "simulator_limit_per_15m": edge.sim_limit,
        "429s_from_the_limit": state["rate_limit"]["refused"],
        "reloads": reloads,
        "discovered_functions_with_logs_fetched": len(PLACED.findall(text)),
        "poll_errors": {
            reason: value
            for reason in ("timeout", "rate_limited", "server_error")
            if (value := _counter(text, "mudbase_exporter_poll_errors_total", reason))
        },
        "warnings_logged": sum(1 for line in log.splitlines() if "level=warn" in line),
    }


def _counter(text: str, name: str, reason: str) -> float:
    match = re.search(rf'^{name}\{{reason="{reason}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


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
    scraping.add_argument(
        "--big-project", type=int, default=0, help="one more project of this many functions"
    )
    mix = sub.add_parser("mixed")
    mix.add_argument("--listed", type=int, default=1000)
    mix.add_argument("--discovered", type=int, default=4000)
    mix.add_argument("--minutes", type=float, default=10)
    status = sub.add_parser("status-page")
    status.add_argument("--functions", type=int, default=10000)
    status.add_argument("--views", type=int, default=15)
    edge = sub.add_parser("edges")
    edge.add_argument("--listed", type=int, default=0)
    edge.add_argument("--discovered", type=int, default=0)
    edge.add_argument("--big-project", action="store_true", help="discovered ones in one project")
    edge.add_argument("--latency", default="0.05:0.1", help="MIN[:MAX] s of every answer")
    edge.add_argument("--failing", type=float, default=0.0, help="share of 500 answers")
    edge.add_argument("--sim-limit", type=int, default=2000, help="per 15 minutes and IP")
    edge.add_argument("--rate", type=float, default=0.5, help="executions per function-minute")
    edge.add_argument("--max-age", default="10m")
    edge.add_argument("--minutes", type=float, default=10, help="of production time")
    edge.add_argument("--sample", type=float, default=10, help="seconds of production time")
    edge.add_argument("--reload-every", type=float, default=0, help="seconds (0: never)")
    edge.add_argument("--time-scale", type=float, default=1.0, help="production s per real s")
    for command in (scraping, mix, status, edge):
        command.add_argument(
            "--source", default=str(ROOT), help="the checkout whose exporter runs (a 'before')"
        )
    costs = sub.add_parser("cpu")
    costs.add_argument("--requests", type=int, default=2000)
    costs.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    configure_logging("error", "logfmt")
    bench = {
        "freshness": freshness,
        "scrape": scrape,
        "cpu": cpu,
        "mixed": mixed,
        "status-page": status_page,
        "edges": edges,
    }[args.bench]
    print(json.dumps(asyncio.run(bench(args)), indent=2))


if __name__ == "__main__":
    main()
