"""`mudbase-exporter`: flags spelled as Prometheus' own tools spell them."""

import argparse
import asyncio
import sys
from collections.abc import Sequence

from exporter import __version__
from exporter.app import Exporter, install_signal_handlers
from exporter.config import ConfigError, LoadedConfig, load_config
from exporter.demo import run_demo
from exporter.logs import LEVELS, configure_logging, get_logger
from exporter.summary import config_summary
from exporter.targets import Shard
from exporter.web import Limits, parse_listen_address
from exporter.webconfig import WebConfig, load_web_config

DEFAULT_PORT = 9717
DEMO_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"  # the demo has no auth: loopback unless asked
log = get_logger("exporter.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mudbase-exporter",
        description="Prometheus exporter for Mudbase serverless function execution stats.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default="config.yaml",
        help="path to the YAML configuration file (default %(default)s)",
    )
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration, print a summary and exit",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=None,
        help=f"address to serve /metrics on (default :{DEFAULT_PORT}; {DEMO_LISTEN} with --demo)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help="exporter-toolkit web configuration: TLS and basic auth for every endpoint",
    )
    parser.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=int,
        default=Limits.max_connections,
        help="most connections served at once; more wait in the listen backlog until one ends "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--shard",
        type=int,
        default=0,
        help="this replica's shard, 0 to --total-shards - 1 (default %(default)s)",
    )
    parser.add_argument(
        "--total-shards",
        dest="total_shards",
        type=int,
        default=1,
        help="replicas sharing the functions by a stable hash; each gets that share of the "
        "request budget (default %(default)s)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        choices=list(LEVELS),
        default="info",
        help="only log messages at this level or above (default %(default)s)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        choices=["logfmt", "json"],
        default="logfmt",
        help="log line format (default %(default)s)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run the built-in simulator and point the exporter at it",
    )
    parser.add_argument("--version", action="version", version=f"mudbase-exporter {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        default = DEMO_LISTEN if args.demo else f":{DEFAULT_PORT}"
        listen = parse_listen_address(args.listen_address or default)
    except ValueError as err:
        print(f"mudbase-exporter: --web.listen-address: {err}", file=sys.stderr)
        return 2
    if not 0 <= args.shard < args.total_shards:
        print(
            f"mudbase-exporter: --shard must be between 0 and --total-shards - 1 "
            f"(got --shard={args.shard} --total-shards={args.total_shards})",
            file=sys.stderr,
        )
        return 2
    if args.max_connections < 1:
        print(
            f"mudbase-exporter: --web.max-connections must be at least 1 "
            f"(got {args.max_connections})",
            file=sys.stderr,
        )
        return 2
    shard = Shard(args.shard, args.total_shards)
    limits = Limits(max_connections=args.max_connections)
    try:
        web = load_web_config(args.web_config_file) if args.web_config_file else None
    except ConfigError as err:
        print(f"mudbase-exporter: --web.config.file: {err}", file=sys.stderr)
        return 1
    if args.demo:
        return asyncio.run(run_demo(listen, web, limits=limits))
    try:
        loaded = load_config(args.config_file)
    except ConfigError as err:
        print(f"mudbase-exporter: {err}", file=sys.stderr)
        return 1
    if args.config_check:
        print(config_summary(loaded, shard))
        return 0
    return asyncio.run(serve(loaded, listen, args.config_file, web, shard, limits=limits))


async def serve(
    loaded: LoadedConfig,
    listen: tuple[str, int],
    config_path: str,
    web: WebConfig | None,
    shard: Shard,
    *,
    limits: Limits | None = None,
) -> int:
    try:
        exporter = Exporter(loaded, listen, config_path, web, shard, limits=limits)
    except OSError as err:
        log.error(  # noqa: TRY400 - the reason is the whole story, a traceback adds nothing
            "cannot listen", address=f"{listen[0]}:{listen[1]}", error=err.strerror
        )
        return 1
    install_signal_handlers(exporter)
    log.info(
        "serving",
        version=__version__,
        address=f"{'https' if web and web.tls_server_config else 'http'}://"
        f"{listen[0]}:{exporter.port}/metrics",
        config=loaded.source,
    )
    await exporter.run()
    return 0
