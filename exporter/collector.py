"""State snapshot -> the per-function part of /metrics, in Prometheus' text format 0.0.4.

No I/O happens here: the renderer only reads what the poller stored. Every metric comes from a
spec in metrics.py; this module decides which samples each function has.

Why not prometheus_client's collector and `generate_latest`: at 10,000 functions with the
execution histograms that is 200,000 samples, each built as a Sample object with a label dict
(3 s per render and a hundred MB of garbage at its peak). Snapshots are immutable, so the
functions are cut into units of about `UNIT_FUNCTIONS` (across projects, and inside a big
one), and a unit's lines are rendered once per change of one of its functions and kept, per
metric family; a render is the list of those pieces, in chunks (see `render_parts`). A change
costs its unit, whatever the size of its project. The output is byte for byte what
`generate_latest` writes (a golden file, made with it, checks this), and `promtool check
metrics` passes on it.
"""

import math
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import cast

from prometheus_client.utils import floatToGoString

from exporter import metrics as m
from exporter.executions import DURATION_BUCKETS
from exporter.state import StateStore, TargetKey, TargetState
from exporter.upstream import FunctionStats

_VALUE_FIELDS: tuple[tuple[m.MetricSpec, Callable[[FunctionStats], float | None]], ...] = (
    (m.FUNCTION_EXECUTIONS, lambda s: s.total_executions),
    (m.FUNCTION_FAILED_EXECUTIONS, lambda s: s.failed_executions),
    (m.FUNCTION_SUCCESS_RATIO, lambda s: s.success_ratio),
    (m.FUNCTION_AVG_EXECUTION_TIME, lambda s: s.avg_execution_seconds),
    (m.FUNCTION_LAST_RUN, lambda s: s.last_run_timestamp),
)
# Every per-function family, in the order of the exposition.
FAMILIES = (
    *(spec for spec, _ in _VALUE_FIELDS),
    *m.FUNCTION_HEALTH_METRICS,
    *m.FUNCTION_CONFIG_METRICS,
    *m.FUNCTION_EXECUTION_METRICS,
    *m.FUNCTION_FAILURE_METRICS,
)
_Lines = tuple[bytes, ...]  # a unit's lines, encoded, one item per family (maybe empty)
Chunk = tuple[bytes, ...]  # consecutive pieces of the exposition, compressed as one gzip member
# The functions, in order, are cut into units of about this many; a unit's lines of one family
# are one chunk. 100 functions make chunks of 8 to 150 KB, which compress as well apart as in
# one stream (at 2 functions a project, a chunk per project compressed 3.8x worse). Where a
# unit ends depends on its functions only (see `_unit_bounds`), so adding or removing a
# function moves the ends next to it, not those of the units after it.
UNIT_FUNCTIONS = 100
_SHORTEST_UNIT = UNIT_FUNCTIONS * 3 // 4
_PICKED_ONE_IN = UNIT_FUNCTIONS - _SHORTEST_UNIT
_LONGEST_UNIT = 2 * UNIT_FUNCTIONS
_ANCHORED_PROJECT = UNIT_FUNCTIONS // 4


# prometheus_client's own number formatting (1.0, 1e+06, +Inf, NaN), untyped upstream
format_value = cast(Callable[[float], str], floatToGoString)


_BOUNDS = {bound: format_value(bound) for bound in (*DURATION_BUCKETS, math.inf)}  # `le` values


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(pairs: dict[str, str]) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in sorted(pairs.items()))


def _header(spec: m.MetricSpec) -> str:
    text = spec.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {spec.name} {text}\n# TYPE {spec.name} {spec.type}\n"


class FunctionRenderer:
    """Renders the per-function families from the state store. Each unit's lines are kept
    per family and redone only when one of its functions' state changed; a render is then a
    list of a few large pieces."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._headers = [_header(spec).encode() for spec in FAMILIES]
        self._keys: list[TargetKey] = []  # the functions of the latest render, in order
        self._bounds: list[tuple[int, int]] = []  # and its units: [start, end) in that order
        # each unit's lines, known by the identities of its functions' snapshots (the entry
        # holds them, so no other object can take their ids while it lives)
        self._units: dict[tuple[int, ...], tuple[tuple[TargetState, ...], _Lines]] = {}

    def render(self) -> bytes:
        return b"".join(piece for chunk in self.render_parts() for piece in chunk)

    def render_parts(self) -> list[Chunk]:
        """The per-function part as chunks of pieces, in order: per family, its header and the
        lines of the first unit, then one chunk per further unit. An unchanged unit's pieces
        are the very same objects as in the previous render, so a chunk made of the same
        objects is unchanged (and its compressed form can be kept)."""
        snapshot = self._state.snapshot()
        keys = list(snapshot)
        if keys != self._keys:  # functions came or went: the units around them change
            self._bounds = _unit_bounds(keys)
        self._keys = keys  # equal keys may be new objects: the next comparison is quicker
        targets = list(snapshot.values())
        units = {}
        for start, end in self._bounds:
            members = tuple(targets[start:end])
            ids = tuple(map(id, members))
            units[ids] = self._units.get(ids) or (members, _render_unit(members))
        self._units = units
        chunks: list[Chunk] = []
        for index, header in enumerate(self._headers):
            pieces = [lines[index] for _, lines in units.values() if lines[index]]
            chunks.append((header, *pieces[:1]))
            chunks.extend((piece,) for piece in pieces[1:])
        return chunks


def _unit_bounds(keys: Sequence[TargetKey]) -> list[tuple[int, int]]:
    """The functions (in order) cut into units: [start, end) of each. A unit ends at an anchor
    once it has `_SHORTEST_UNIT` functions, or at `_LONGEST_UNIT`. Anchors: the last function
    of a project of `_ANCHORED_PROJECT` or more (a chunk of one project's lines compresses
    better than one that spans two, by 2 to 7%), and in a project smaller than that or bigger
    than a unit, the functions a hash picks. A project of a unit's size is then a unit, or
    ends one."""
    sizes = Counter(key.project for key in keys)
    bounds, start = [], 0
    for index, key in enumerate(keys):
        size, project = index + 1 - start, sizes[key.project]
        ends_project = index + 1 == len(keys) or keys[index + 1].project != key.project
        anchor = (ends_project and project >= _ANCHORED_PROJECT) or (
            not _ANCHORED_PROJECT <= project <= _LONGEST_UNIT and _picked(key)
        )
        if size >= _LONGEST_UNIT or (size >= _SHORTEST_UNIT and anchor):
            bounds.append((start, index + 1))
            start = index + 1
    if start < len(keys):
        bounds.append((start, len(keys)))
    return bounds


def _picked(key: TargetKey) -> bool:
    """One function in `_PICKED_ONE_IN`, by a hash of its ID that is the same in every process
    (so are the units, and the tests)."""
    return zlib.crc32(key.function.encode()) % _PICKED_ONE_IN == 0


def _render_unit(targets: Sequence[TargetState]) -> _Lines:
    families: list[list[str]] = [[] for _ in FAMILIES]
    for target in targets:
        for lines, text in zip(families, _render(target), strict=True):
            if text:
                lines.append(text)
    return tuple("".join(lines).encode() for lines in families)


def _render(target: TargetState) -> tuple[str, ...]:
    function = {"project": target.key.project, "function": target.key.function}
    labels = _labels(function)
    return (
        *_value_lines(target, labels),
        *_health_lines(target, labels),
        *_config_lines(target, function, labels),
        *_execution_lines(target, function, labels),
        *_failure_lines(target, function, labels),
    )


def _value_lines(target: TargetState, labels: str) -> list[str]:
    lines = []
    for spec, field in _VALUE_FIELDS:
        value = field(target.stats) if target.stats is not None else None
        lines.append("" if value is None else f"{spec.name}{{{labels}}} {format_value(value)}\n")
    return lines


def _health_lines(target: TargetState, labels: str) -> tuple[str, str]:
    up = ""
    if target.polled:
        up = f"{m.FUNCTION_UP.name}{{{labels}}} {'1.0' if target.up else '0.0'}\n"
    last = ""
    if target.last_success is not None:
        value = format_value(target.last_success)
        last = f"{m.FUNCTION_LAST_SUCCESS.name}{{{labels}}} {value}\n"
    return up, last


def _config_lines(
    target: TargetState, function: dict[str, str], labels: str
) -> tuple[str, str, str]:
    objective = format_value(target.settings.slo_objective)
    expected = ""
    if target.settings.expected_run_interval is not None:
        value = format_value(target.settings.expected_run_interval)
        expected = f"{m.FUNCTION_EXPECTED_RUN_INTERVAL.name}{{{labels}}} {value}\n"
    info = ""
    if target.info is not None:
        active = "" if target.info.active is None else str(target.info.active).lower()
        info_labels = _labels(
            function
            | {"name": target.info.name, "trigger_type": target.info.trigger_type, "active": active}
        )
        info = f"{m.FUNCTION_INFO.name}{{{info_labels}}} 1.0\n"
    return f"{m.FUNCTION_SLO_OBJECTIVE.name}{{{labels}}} {objective}\n", expected, info


def _execution_lines(
    target: TargetState, function: dict[str, str], labels: str
) -> tuple[str, str, str]:
    totals = target.executions
    if totals is None:
        return "", "", ""
    observed = m.FUNCTION_OBSERVED_EXECUTIONS.name
    counts = ""
    for (outcome, trigger_type, invoked_by), count in sorted(totals.counts.items()):
        kind = {"outcome": outcome, "trigger_type": trigger_type, "invoked_by": invoked_by}
        counts += f"{observed}{{{_labels(function | kind)}}} {format_value(count)}\n"
    unobserved = f"{m.FUNCTION_UNOBSERVED_EXECUTIONS.name}{{{labels}}} "
    unobserved += f"{format_value(totals.unobserved)}\n"
    if not totals.placed:  # only listed so far: nothing observed, no durations
        return counts, unobserved, ""
    name = m.FUNCTION_EXECUTION_DURATION.name
    # labels sort as function, le, project
    bucket = f'{name}_bucket{{function="{_escape(function["function"])}",le="'
    project = f'",project="{_escape(function["project"])}"}} '
    cumulative = totals.cumulative_buckets()
    histogram = [
        f"{bucket}{_BOUNDS[bound]}{project}{format_value(count)}\n" for bound, count in cumulative
    ]
    total = cumulative[-1][1]
    histogram.append(f"{name}_count{{{labels}}} {format_value(total)}\n")
    histogram.append(f"{name}_sum{{{labels}}} {format_value(totals.duration_sum)}\n")
    return counts, unobserved, "".join(histogram)


def _failure_lines(
    target: TargetState, function: dict[str, str], labels: str
) -> tuple[str, str, str]:
    """Why the function fails: its latest failure (one series), its failures by class."""
    failures = target.executions.failures if target.executions is not None else None
    if failures is None or failures.latest is None:
        return "", "", ""
    latest = failures.latest
    described = _labels(
        function
        | {
            "error_class": latest.error_class,
            "trigger_type": latest.trigger_type,
            "invoked_by": latest.invoked_by,
        }
    )
    info = f"{m.FUNCTION_LAST_FAILURE_INFO.name}{{{described}}} 1.0\n"
    when = f"{m.FUNCTION_LAST_FAILURE_TIME.name}{{{labels}}} {format_value(latest.at)}\n"
    counted = "".join(
        f"{m.FUNCTION_OBSERVED_FAILURES.name}"
        f"{{{_labels(function | {'error_class': error})}}} {format_value(count)}\n"
        for error, count in sorted(failures.by_class.items())
    )
    return info, when, counted
