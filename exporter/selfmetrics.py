"""The exporter's own metrics, built from the specs in `exporter.metrics`."""

import platform
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter import metrics as m
from exporter.errors import Reason
from exporter.supervision import LoopErrors

BUDGET_WINDOW_SECONDS = 15 * 60

# `_created` series double the exposition and mean nothing for a long-running exporter.
disable_created_metrics()  # type: ignore[no-untyped-call]


class RequestWindow:
    """Counts requests over a sliding 15-minute window (Mudbase's rate-limit window), in
    one-second buckets: memory stays bounded however many requests there are."""

    def __init__(self, window: float = BUDGET_WINDOW_SECONDS) -> None:
        self._window = window
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first
        self._total = 0
        self._lock = threading.Lock()

    def add(self, now: float) -> None:
        second = int(now)
        with self._lock:
            if self._buckets and self._buckets[-1][0] == second:
                self._buckets[-1][1] += 1
            else:
                self._buckets.append([second, 1])
            self._total += 1
            self._expire(now)

    def count(self, now: float | None = None) -> int:
        with self._lock:
            self._expire(time.monotonic() if now is None else now)
            return self._total

    def _expire(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] <= now - self._window:
            self._total -= self._buckets.popleft()[1]


def _counter(spec: m.MetricSpec, registry: CollectorRegistry) -> Counter:
    return Counter(spec.name, spec.help, spec.labels, registry=registry)


def _gauge(spec: m.MetricSpec, registry: CollectorRegistry) -> Gauge:
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


class Expiring(Protocol):
    def expiry(self) -> float | None: ...


class TokenExpiryCollector(Collector):
    """The current credential's expiry, read at collect time from the running credential."""

    def __init__(self) -> None:
        self.credential: Expiring | None = None
        self.source = ""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            m.TOKEN_EXPIRY.name, m.TOKEN_EXPIRY.help, labels=m.TOKEN_EXPIRY.labels
        )
        expiry = self.credential.expiry() if self.credential is not None else None
        if expiry is not None:
            family.add_metric([self.source], expiry)
        yield family


class ExecutionCoverageCollector(Collector):
    """The exporter-wide execution counts, read at collect time from the state store (which
    counts them as functions' totals move)."""

    def __init__(self) -> None:
        self.source: Callable[[], tuple[int, int]] = lambda: (0, 0)

    def collect(self) -> Iterator[Metric]:
        observed, unobserved = self.source()
        for spec, value in (
            (m.EXECUTIONS_OBSERVED, observed),
            (m.EXECUTIONS_UNOBSERVED, unobserved),
        ):
            yield CounterMetricFamily(spec.name.removesuffix("_total"), spec.help, value=value)


class ExporterMetrics:
    """Counters, histograms and gauges about the exporter itself, in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.upstream_requests = _counter(m.UPSTREAM_REQUESTS, registry)
        self.poll_errors = _counter(m.POLL_ERRORS, registry)
        for reason in Reason:  # every reason at 0 from the start, so increase() sees the first
            self.poll_errors.labels(reason.value)
        self.poll_duration = Histogram(
            m.POLL_DURATION.name,
            m.POLL_DURATION.help,
            buckets=m.POLL_DURATION_BUCKETS,
            registry=registry,
        )
        self.request_wait = Histogram(
            m.REQUEST_WAIT.name,
            m.REQUEST_WAIT.help,
            m.REQUEST_WAIT.labels,
            buckets=m.REQUEST_WAIT_BUCKETS,
            registry=registry,
        )
        self.requests_skipped = _counter(m.REQUESTS_SKIPPED, registry)
        self.planned_requests = _gauge(m.PLANNED_REQUESTS, registry)  # by the planner's kinds
        self.rate_limit_paused = _counter(m.RATE_LIMIT_PAUSED, registry)
        self.poll_interval = _gauge(m.POLL_INTERVAL, registry)
        self.configured_poll_interval = _gauge(m.CONFIGURED_POLL_INTERVAL, registry)
        self.request_budget = _gauge(m.REQUEST_BUDGET, registry)
        self.targets = _gauge(m.TARGETS, registry)
        self.config_last_reload_successful = _gauge(m.CONFIG_LAST_RELOAD_SUCCESSFUL, registry)
        self.config_last_reload_success_time = _gauge(m.CONFIG_LAST_RELOAD_SUCCESS_TIME, registry)
        self.loop_errors = LoopErrors(_counter(m.LOOP_ERRORS, registry))
        self.last_render = _gauge(m.LAST_RENDER, registry)
        _gauge(m.BUILD_INFO, registry).labels(__version__, platform.python_version()).set(1)
        self.request_window = RequestWindow()
        _gauge(m.REQUEST_BUDGET_USED, registry).set_function(self.request_window.count)
        self.token_expiry = TokenExpiryCollector()
        registry.register(self.token_expiry)
        self.execution_coverage = ExecutionCoverageCollector()
        registry.register(self.execution_coverage)

    def observe_request(self, endpoint: str, code: str) -> None:
        self.upstream_requests.labels(endpoint, code).inc()
        self.request_window.add(time.monotonic())
