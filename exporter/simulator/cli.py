"""`mudbase-simulator`: run the fake Mudbase API on its own (tests, benchmarks, compose)."""

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from aiohttp import web

from exporter.durations import parse_duration
from exporter.simulator.limits import MUDBASE_API_LIMIT, SlidingLimit
from exporter.simulator.scenarios import demo_simulator, load_scenario
from exporter.simulator.server import Simulator, build_app
from exporter.web import parse_listen_address


async def serve(sim: Simulator, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner and the bound port (port 0 picks a free one)."""
    # handler_cancellation: a hung answer ends when its client goes away
    runner = web.AppRunner(
        build_app(sim), access_log=None, handle_signals=False, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, shutdown_timeout=1.0)
    await site.start()
    server = site._server
    bound = server.sockets[0].getsockname()[1] if server is not None else port  # type: ignore[attr-defined]
    return runner, int(bound)


async def _main(args: argparse.Namespace) -> int:
    sim = (
        load_scenario(Path(args.scenario), args.seed)
        if args.scenario != "demo"
        else demo_simulator(args.seed)
    )
    sim.auth.static_tokens.update(args.token or [])
    if args.rate_limit is not None:
        sim.api_limit = SlidingLimit(args.rate_limit, parse_duration(args.rate_limit_window))
    low, _, high = args.latency.partition(":")
    sim.latency = (float(low), float(high or low))
    host, port = parse_listen_address(args.listen_address)
    runner, bound = await serve(sim, host, port)
    print(f"mudbase-simulator listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mudbase-simulator", description=__doc__)
    parser.add_argument(
        "--listen-address",
        default="127.0.0.1:9718",
        help="HOST:PORT to serve on; port 0 picks a free port (default %(default)s)",
    )
    parser.add_argument(
        "--scenario", default="demo", help="'demo' or a YAML scenario file (default %(default)s)"
    )
    parser.add_argument("--token", action="append", help="accept this bearer token (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for repeatable data")
    parser.add_argument(
        "--latency",
        default="0",
        help="MIN[:MAX] seconds every API answer waits, e.g. 0.05:0.1 (default %(default)s)",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        help=f"requests to /api/* allowed per client IP per --rate-limit-window, as Mudbase "
        f"enforces them; 0 turns the limit off (default {MUDBASE_API_LIMIT}, or the scenario's)",
    )
    parser.add_argument(
        "--rate-limit-window",
        default="15m",
        help="the sliding window of --rate-limit (default %(default)s)",
    )
    args = parser.parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
