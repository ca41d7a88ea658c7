"""State snapshot -> metric families, fresh on every collect (removed targets disappear).

No I/O happens here: the collector only reads what the poller stored.
"""

import math
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter import metrics as m
from exporter.state import StateStore, TargetState
from exporter.upstream import FunctionStats

_VALUE_FIELDS: tuple[tuple[m.MetricSpec, Callable[[FunctionStats], float | None]], ...] = (
    (m.FUNCTION_EXECUTIONS, lambda s: s.total_executions),
    (m.FUNCTION_FAILED_EXECUTIONS, lambda s: s.failed_executions),
    (m.FUNCTION_SUCCESS_RATIO, lambda s: s.success_ratio),
    (m.FUNCTION_AVG_EXECUTION_TIME, lambda s: s.avg_execution_seconds),
    (m.FUNCTION_LAST_RUN, lambda s: s.last_run_timestamp),
)


def _bucket_bound(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def _family(spec: m.MetricSpec) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


class FunctionCollector(Collector):
    """Per-function gauges from the state store."""

    def __init__(self, state: StateStore) -> None:
        self._state = state

    def describe(self) -> Iterable[Metric]:
        specs = (*m.FUNCTION_VALUE_METRICS, *m.FUNCTION_HEALTH_METRICS, *m.FUNCTION_CONFIG_METRICS)
        return [_family(spec) for spec in specs] + list(self._execution_families([]))

    def collect(self) -> Iterator[Metric]:
        targets = list(self._state.snapshot().values())
        yield from self._value_families(targets)
        yield from self._health_families(targets)
        yield from self._config_families(targets)
        yield from self._execution_families(targets)

    @staticmethod
    def _value_families(targets: list[TargetState]) -> Iterator[GaugeMetricFamily]:
        for spec, field in _VALUE_FIELDS:
            family = _family(spec)
            for target in targets:
                value = field(target.stats) if target.stats is not None else None
                if value is not None:
                    family.add_metric([target.key.project, target.key.function], value)
            yield family

    @staticmethod
    def _health_families(targets: list[TargetState]) -> Iterator[GaugeMetricFamily]:
        up = _family(m.FUNCTION_UP)
        last_success = _family(m.FUNCTION_LAST_SUCCESS)
        for target in targets:
            labels = [target.key.project, target.key.function]
            if target.polled:
                up.add_metric(labels, 1.0 if target.up else 0.0)
            if target.last_success is not None:
                last_success.add_metric(labels, target.last_success)
        yield up
        yield last_success

    @staticmethod
    def _config_families(targets: list[TargetState]) -> Iterator[GaugeMetricFamily]:
        objective = _family(m.FUNCTION_SLO_OBJECTIVE)
        expected = _family(m.FUNCTION_EXPECTED_RUN_INTERVAL)
        info = _family(m.FUNCTION_INFO)
        for target in targets:
            labels = [target.key.project, target.key.function]
            objective.add_metric(labels, target.settings.slo_objective)
            if target.settings.expected_run_interval is not None:
                expected.add_metric(labels, target.settings.expected_run_interval)
            if target.info is not None:
                active = "" if target.info.active is None else str(target.info.active).lower()
                info.add_metric([*labels, target.info.name, target.info.trigger_type, active], 1)
        yield objective
        yield expected
        yield info

    @staticmethod
    def _execution_families(targets: list[TargetState]) -> Iterator[Metric]:
        spec = m.FUNCTION_OBSERVED_EXECUTIONS
        observed = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        spec = m.FUNCTION_UNOBSERVED_EXECUTIONS
        unobserved = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        spec = m.FUNCTION_EXECUTION_DURATION
        duration = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
        for target in targets:
            totals = target.executions
            if totals is None:
                continue
            labels = [target.key.project, target.key.function]
            for kind, count in sorted(totals.counts.items()):
                observed.add_metric([*labels, *kind], count)
            unobserved.add_metric(labels, totals.unobserved)
            buckets = [(_bucket_bound(le), n) for le, n in totals.cumulative_buckets()]
            duration.add_metric(labels, buckets, totals.duration_sum)
        yield observed
        yield unobserved
        yield duration
