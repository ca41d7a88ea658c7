"""Wires config -> client -> poller -> state -> collector -> HTTP, and owns the lifecycle."""

import asyncio
import concurrent.futures
import contextlib
import signal
import time
from dataclasses import dataclass

import httpx
from httpx_aiohttp import HttpxAiohttpClient
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from exporter import __version__
from exporter.auth import ApiKey, Credential, FileSecret, FileToken, StaticToken
from exporter.client import MudbaseClient, RequestObserver, RetryPolicy
from exporter.collector import FunctionRenderer
from exporter.config import (
    ApiKeyCredentials,
    ConfigError,
    LoadedConfig,
    LoginCredentials,
    load_config,
    public_url,
    secrets_of,
)
from exporter.durations import format_duration
from exporter.exposition import CachedExposition
from exporter.landing import Overview, StatusPage
from exporter.logs import REDACTOR, get_logger
from exporter.planner import POLL_DEADLINE_SHARE, RequestPlanner, shard_budget
from exporter.poller import Poller, PollSettings
from exporter.selfmetrics import ExporterMetrics
from exporter.session import Session
from exporter.state import StateStore
from exporter.supervision import Health, Loop
from exporter.targets import FunctionSettings, Shard, TargetKey
from exporter.web import ExporterHTTPServer, Limits, start_http_server
from exporter.webconfig import BasicAuth, TLSContextSource, WebConfig

log = get_logger("exporter.app")


def make_credential(
    loaded: LoadedConfig,
    http: httpx.AsyncClient,
    on_request: RequestObserver,
    total_shards: int = 1,
    planner: RequestPlanner | None = None,
) -> Credential:
    """The credential object for the configured way of authenticating."""
    credentials, config = loaded.credentials, loaded.config
    if isinstance(credentials, LoginCredentials):
        password = (
            FileSecret(credentials.file, credentials.password).current
            if credentials.file is not None
            else credentials.password
        )
        return Session(
            config.mudbase.url,
            credentials.email,
            password,
            http,
            timeout=request_timeout(loaded),
            on_request=on_request,
            share=1 / total_shards,
            planner=planner,
        )
    if isinstance(credentials, ApiKeyCredentials):
        return ApiKey(credentials.key, credentials.file)
    if credentials.file is not None:
        return FileToken(credentials.file, credentials.token)
    return StaticToken(credentials.token)


def retry_policy(loaded: LoadedConfig) -> RetryPolicy:
    """Retries as configured; none is scheduled past its poll's deadline."""
    config = loaded.config
    return RetryPolicy(
        attempts=config.mudbase.retries + 1,
        initial_backoff=min(0.5, config.interval / 20),
        max_wait=config.mudbase.max_retry_wait,
    )


def new_http_client(concurrency: int, timeout: float) -> httpx.AsyncClient:
    """httpx's API over aiohttp's connection pool: httpcore's pool caps one client at about
    800 requests/s on loopback, the aiohttp transport does several thousand."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return HttpxAiohttpClient(
        limits=limits,
        # httpx's own default (5 s) would otherwise cut requests shorter than mudbase.timeout
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": f"mudbase-exporter/{__version__}"},
        follow_redirects=False,
    )


def request_timeout(loaded: LoadedConfig) -> float:
    config = loaded.config
    return min(config.mudbase.timeout, config.interval * POLL_DEADLINE_SHARE)


@dataclass
class _Auth:
    """The credential of one Mudbase URL and set of credentials, kept across reloads that
    change neither (a login session is not logged in again), with its own HTTP client."""

    identity: tuple[object, ...]
    credential: Credential
    http: httpx.AsyncClient
    renewal: asyncio.Task[None] | None = None  # a login session renews on its own timer

    async def close(self) -> None:
        if self.renewal is not None:
            self.renewal.cancel()
            await asyncio.gather(self.renewal, return_exceptions=True)
        await self.http.aclose()


def poll_settings(loaded: LoadedConfig) -> PollSettings:
    config = loaded.config
    return PollSettings(
        stale_after=config.stale_after,
        max_age=config.max_age,
        logs_for_changes=loaded.change_driven_logs,
        execution_metrics=config.execution_metrics,
        execution_pages=config.execution_pages,
    )


@dataclass
class _Runtime:
    """What one loaded configuration runs: its HTTP client (the poller outlives it)."""

    loaded: LoadedConfig
    http: httpx.AsyncClient

    def same_connection(self, other: LoadedConfig) -> bool:
        """True if `other` differs from this runtime's config in its targets only."""
        mine, theirs = self.loaded.config, other.config
        return (
            mine.model_dump(exclude={"targets"}) == theirs.model_dump(exclude={"targets"})
            and self.loaded.credentials == other.credentials
        )

    async def close(self) -> None:
        await self.http.aclose()


class ReloadError(Exception):
    """A reload was refused; the running configuration is unchanged."""


class Exporter:
    """One running exporter: its state, its HTTP server, the request planner, and the runtime
    of its config."""

    def __init__(
        self,
        loaded: LoadedConfig,
        listen: tuple[str, int],
        config_path: str | None = None,
        web: WebConfig | None = None,
        shard: Shard | None = None,
        *,
        limits: Limits | None = None,
    ) -> None:
        REDACTOR.add(*secrets_of(loaded.credentials))
        self.loaded = loaded
        self.config_path = config_path
        self.shard = shard or Shard()
        self.state = StateStore()
        self.functions = FunctionRenderer(self.state)
        self.registry = CollectorRegistry()  # the exporter's own metrics, rendered per scrape
        self.metrics = ExporterMetrics(self.registry)
        self.metrics.execution_coverage.source = self.state.execution_coverage
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.planner = RequestPlanner(
            self._budget(loaded),
            loaded.config.interval,
            loaded.config.concurrency,
            self.metrics,
            pages_per_poll=loaded.config.pages_per_poll,
            change_driven_logs=loaded.change_driven_logs,
        )
        self._mark_loaded()
        self.exposition = CachedExposition(
            self.functions.render_parts,
            lambda: self.state.generation,
            self.registry,
            on_error=lambda error: self.metrics.loop_errors.caught(Loop.RENDER, error),
        )
        self.metrics.last_render.set_function(lambda: self.exposition.last_render_time or 0.0)
        self.health = Health(self.exposition.unrendered_for)
        self.state.subscribe(self.exposition.notify)
        self.status_page = StatusPage(self.state)
        self.server = ExporterHTTPServer(
            listen,
            self.exposition,
            landing_page=lambda query: self.status_page.render(query, self._overview()),
            ready=self._ready,
            health_problems=self.health.problems,
            reload=self.reload_from_thread,
            tls=TLSContextSource(web.tls_server_config) if web and web.tls_server_config else None,
            auth=BasicAuth(web.basic_auth_users) if web else None,
            headers=web.headers if web else None,
            limits=limits,
        )
        self._ready_from: int | None = None
        self._ready_latched = False
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._runtime: _Runtime | None = None
        self._poller: Poller | None = None  # made at start; outlives reloads, like the planner
        self._retiring: set[asyncio.Task[None]] = set()  # old HTTP clients, closed later
        self._auth: _Auth | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _overview(self) -> Overview:
        """What the status page shows beside the functions, from the planner and the config."""
        return Overview(self.planner.plan, self.loaded.config.mudbase.url, self.planner.pause_end())

    def _ready(self) -> bool:
        """Every function polled once, and that visible on /metrics; then ready for good.
        (The renderer shows the state's changes on its own: it was told of each.)"""
        if not self._ready_latched and self.state.ready():
            if self._ready_from is None:
                self._ready_from = self.state.generation
            self._ready_latched = self.exposition.rendered_generation() >= self._ready_from
        return self._ready_latched

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.exposition.start()
        heartbeat = asyncio.create_task(self.health.beat(self.metrics.loop_errors))
        start_http_server(self.server)
        self._runtime = await self._start(self.loaded)
        await self._stop.wait()
        log.info("shutting down")
        heartbeat.cancel()
        if self._poller is not None:
            await self._poller.stop()
        for task in self._retiring:
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self._runtime.close()
        if self._auth is not None:
            await self._auth.close()
        self.server.shutdown()
        self.server.server_close()
        self.exposition.stop()

    def _targets(self, loaded: LoadedConfig) -> dict[TargetKey, FunctionSettings]:
        """The configured functions this replica owns."""
        return {k: v for k, v in loaded.config.function_settings().items() if self.shard.owns(k)}

    def _budget(self, loaded: LoadedConfig) -> float:
        return shard_budget(loaded.config.mudbase.request_budget, self.shard.total)

    async def _credential(self, loaded: LoadedConfig) -> Credential:
        """The credential for this config: the running one if the URL and the credentials
        are unchanged (a reload never logs in again for nothing), else a new one."""
        identity = (loaded.config.mudbase.url, loaded.credentials)
        if self._auth is not None and self._auth.identity == identity:
            return self._auth.credential
        http = new_http_client(2, request_timeout(loaded))
        credential = make_credential(
            loaded, http, self.metrics.observe_request, self.shard.total, self.planner
        )
        renewal = None
        if isinstance(credential, Session):
            renewal = asyncio.create_task(credential.keep_fresh(self.metrics.loop_errors))
        old, self._auth = self._auth, _Auth(identity, credential, http, renewal)
        if old is not None:
            await old.close()
        return credential

    def _configure_planner(self, loaded: LoadedConfig) -> None:
        config = loaded.config
        self.planner.configure(
            budget=self._budget(loaded),
            interval=config.interval,
            concurrency=config.concurrency,
            pages_per_poll=config.pages_per_poll,
            change_driven_logs=loaded.change_driven_logs,
        )

    async def _start(self, loaded: LoadedConfig) -> _Runtime:
        """Run `loaded`: the planner configured, a new HTTP client and API client, and the
        poller (made the first time, then kept) told to use them."""
        config = loaded.config
        self._configure_planner(loaded)
        http = new_http_client(config.concurrency, request_timeout(loaded))
        credential = await self._credential(loaded)
        self.metrics.token_expiry.credential = credential
        self.metrics.token_expiry.source = (
            "login"
            if isinstance(loaded.credentials, LoginCredentials)
            else loaded.credentials.source
        )
        client = MudbaseClient(
            config.mudbase.url,
            credential,
            http,
            retry=retry_policy(loaded),
            timeout=request_timeout(loaded),
            on_request=self.metrics.observe_request,
            planner=self.planner,
        )
        if self._poller is None:
            self._poller = Poller(
                client,
                self.state,
                self.metrics,
                self.planner,
                poll_settings(loaded),
                shard=self.shard,
            )
        else:
            self._poller.configure(client, poll_settings(loaded))
        targets = self._targets(loaded)
        self._poller.apply(targets, config.project_selectors())
        plan = self.planner.plan
        log.info(
            "polling started",
            functions=len(targets),
            discovered_projects=len(plan.demand.projects),
            shard=f"{self.shard.index}/{self.shard.total}",
            interval=format_duration(round(plan.interval, 3)),
            url=public_url(config.mudbase.url),
        )
        return _Runtime(loaded, http)

    async def reload(self) -> None:
        """Load the config file again; on any error keep the running one and raise ReloadError.

        Only the targets changed: added ones start polling, removed ones stop (and leave
        /metrics), the others go on untouched. Anything else changed: a new HTTP client and
        API client serve the requests from then on (the old ones finish the polls in flight).
        The request planner and the poller are kept either way: the bucket, a 429 pause, each
        function's place in the schedule and in the logs round-robin carry over; and so does
        the credential while the URL and the credentials stay the same.
        """
        async with self._reload_lock:
            try:
                await self._reload()
            finally:  # what /-/reload answers, the next scrape shows
                self.exposition.self_metrics_changed()

    async def _reload(self) -> None:
        if self.config_path is None:
            raise ReloadError("no configuration file to reload (demo mode)")
        try:
            loaded = load_config(self.config_path)
        except ConfigError as err:
            self.metrics.config_last_reload_successful.set(0)
            log.error(  # noqa: TRY400 - the message names every problem; no traceback
                "configuration reload failed; keeping the running configuration", error=str(err)
            )
            raise ReloadError(str(err)) from None
        REDACTOR.add(*secrets_of(loaded.credentials))
        await self._switch_to(loaded)
        self.loaded = loaded
        self._mark_loaded()
        log.info("configuration reloaded", functions=len(loaded.config.function_keys()))

    async def _switch_to(self, loaded: LoadedConfig) -> None:
        """Run `loaded`: new targets only, or a new runtime; on failure, the old one again."""
        runtime = self._runtime
        if runtime is not None and self._poller is not None and runtime.same_connection(loaded):
            self._poller.apply(self._targets(loaded), loaded.config.project_selectors())
            runtime.loaded = loaded
            return
        try:
            self._runtime = await self._start(loaded)
        except Exception as err:
            self.metrics.config_last_reload_successful.set(0)
            log.exception("could not start the new configuration; keeping the old one")
            if runtime is not None:
                self._configure_planner(runtime.loaded)
            raise ReloadError(f"could not start the new configuration: {err}") from None
        if runtime is not None:
            self._retire(runtime)

    def _retire(self, runtime: _Runtime) -> None:
        """Close the old HTTP client once the polls it serves are over (a poll's deadline)."""

        async def close_later() -> None:
            try:
                await asyncio.sleep(self.planner.poll_deadline)
            finally:
                await runtime.close()

        task = asyncio.create_task(close_later(), name="close the old HTTP client")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def reload_from_thread(self) -> str | None:
        """For the HTTP thread: run a reload on the event loop; the error text, or None."""
        if self._loop is None:
            return "not running yet"
        future = asyncio.run_coroutine_threadsafe(self.reload(), self._loop)
        try:
            future.result(timeout=30)
        except ReloadError as err:
            return str(err)
        except concurrent.futures.TimeoutError:
            return "the reload is still running after 30 s; see the logs"
        return None

    def _mark_loaded(self) -> None:
        self.metrics.config_last_reload_successful.set(1)
        self.metrics.config_last_reload_success_time.set(time.time())


def install_signal_handlers(exporter: Exporter) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, exporter.request_stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload_quietly(exporter)))


async def _reload_quietly(exporter: Exporter) -> None:
    """SIGHUP: reload; a failure is already logged and counted, the exporter goes on."""
    with contextlib.suppress(ReloadError):
        await exporter.reload()
