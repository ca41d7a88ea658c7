"""Wires config -> client -> poller -> state -> collector -> HTTP, and owns the lifecycle."""

import asyncio
import signal
import time

import httpx
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from exporter import __version__
from exporter.auth import FileToken, StaticToken, TokenSource
from exporter.client import MudbaseClient, RetryPolicy
from exporter.collector import FunctionCollector
from exporter.config import LoadedConfig
from exporter.durations import format_duration
from exporter.exposition import CachedExposition
from exporter.landing import render_landing_page
from exporter.logs import REDACTOR, get_logger
from exporter.poller import POLL_DEADLINE_SHARE, Poller
from exporter.selfmetrics import ExporterMetrics
from exporter.state import StateStore
from exporter.web import ExporterHTTPServer, start_http_server

log = get_logger("exporter.app")

RETRY_DEADLINE_SHARE = 0.5  # retries stop being scheduled after this share of the interval


def token_source(loaded: LoadedConfig) -> TokenSource:
    settings = loaded.config.mudbase
    if loaded.token_source == "token_file" and settings.token_file is not None:  # noqa: S105
        return FileToken(settings.token_file, loaded.token)
    return StaticToken(loaded.token)


def retry_policy(loaded: LoadedConfig) -> RetryPolicy:
    config = loaded.config
    return RetryPolicy(
        attempts=config.mudbase.retries + 1,
        initial_backoff=min(0.5, config.interval / 20),
        max_wait=min(config.mudbase.max_retry_wait, config.interval * RETRY_DEADLINE_SHARE),
        deadline=config.interval * RETRY_DEADLINE_SHARE,
    )


class Exporter:
    """One running exporter: its state, its HTTP server and its pollers."""

    def __init__(self, loaded: LoadedConfig, listen: tuple[str, int]) -> None:
        REDACTOR.add(loaded.token.get_secret_value())
        self.loaded = loaded
        self.state = StateStore()
        self.registry = CollectorRegistry()
        self.metrics = ExporterMetrics(self.registry)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(FunctionCollector(self.state))
        self.metrics.config_last_reload_successful.set(1)
        self.metrics.config_last_reload_success_time.set(time.time())
        interval = format_duration(loaded.config.interval)
        self.server = ExporterHTTPServer(
            listen,
            CachedExposition(self.registry, lambda: self.state.generation),
            lambda: render_landing_page(self.state.snapshot(), interval),
            self.state.ready,
        )
        self._stop = asyncio.Event()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        config = self.loaded.config
        start_http_server(self.server)
        limits = httpx.Limits(
            max_connections=config.concurrency, max_keepalive_connections=config.concurrency
        )
        async with httpx.AsyncClient(
            limits=limits,
            headers={"User-Agent": f"mudbase-exporter/{__version__}"},
            follow_redirects=False,
        ) as http:
            client = MudbaseClient(
                config.mudbase.url,
                token_source(self.loaded),
                http,
                retry=retry_policy(self.loaded),
                timeout=min(config.mudbase.timeout, config.interval * POLL_DEADLINE_SHARE),
                on_request=self.metrics.observe_request,
            )
            poller = Poller(
                client,
                self.state,
                self.metrics,
                interval=config.interval,
                concurrency=config.concurrency,
                keep_values_for=config.keep_values_for,
            )
            poller.apply(config.function_settings())
            log.info(
                "polling started",
                functions=len(config.function_keys()),
                interval=format_duration(config.interval),
                url=config.mudbase.url,
            )
            await self._stop.wait()
            log.info("shutting down")
            await poller.stop()
        self.server.shutdown()
        self.server.server_close()


def install_signal_handlers(exporter: Exporter) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, exporter.request_stop)
