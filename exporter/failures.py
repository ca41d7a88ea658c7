"""Why a function fails: its latest failure, its failures by error class, its recent outcomes.

Kept per function beside its execution totals, immutable, from the executions of its logs
answers (each seen once). Error texts are folded into classes (`exporter.errorclass`), at most
`MAX_CLASSES` of them per function, the rest `other`. A function's first logs answer is used
too: its newest failure is known at once, and its classes exist (at 0) before they are counted.
Nothing here does I/O.
"""

import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.errorclass import bounded_class, error_class
from exporter.upstream import Execution

RECENT_WINDOW = 900.0  # seconds: the recent success ratio counts executions dated this recently
_MINUTE = 60.0
_RECENT_MINUTES = math.ceil(RECENT_WINDOW / _MINUTE)
_Labels = Callable[[Execution], tuple[str, str, str]]  # outcome, trigger_type, invoked_by


@dataclass(frozen=True, slots=True)
class LatestFailure:
    """The newest failed execution seen: its error class, bounded labels and time."""

    error_class: str  # bounded: one of the function's kept classes, or other (the label)
    trigger_type: str
    invoked_by: str
    at: float  # Unix time it was dated (executedAt)
    folded: str = ""  # its own class even when that is beyond the bound (the status page)


@dataclass(frozen=True, slots=True)
class RecentRatio:
    """Successes among the executions seen dated within `RECENT_WINDOW` of a moment."""

    successes: int
    executions: int

    @property
    def ratio(self) -> float | None:
        return self.successes / self.executions if self.executions else None


@dataclass(frozen=True, slots=True)
class Failures:
    by_class: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    latest: LatestFailure | None = None
    # (minute, successes, failures) of the executions seen, per minute they were dated in,
    # oldest first, at most the window's minutes behind the newest: flat, 8 bytes a number
    # (at most 360 bytes a function, where tuples of ints took about three times as much)
    recent: "array[int]" = field(default_factory=lambda: array("q"))

    def seen(self, executions: Iterable[Execution], labels: _Labels, *, count: bool) -> "Failures":
        """These executions too (each seen once): their failures counted by class if `count`
        (a first answer's only seed their classes at 0), the newest failure, the minutes."""
        by_class, latest = Counter(self.by_class), self.latest
        minutes = {minute: (ok, bad) for minute, ok, bad in _triples(self.recent)}
        for execution in executions:
            at = execution.executed_at.timestamp() if execution.executed_at else None
            outcome, trigger_type, invoked_by = labels(execution)
            if at is not None and outcome != "unknown":
                minute = int(at // _MINUTE)
                ok, bad = minutes.get(minute, (0, 0))
                failed = outcome == "failure"
                minutes[minute] = (ok + (not failed), bad + failed)
            if outcome != "failure":
                continue
            failure = _failure(execution, (trigger_type, invoked_by), by_class)
            by_class[failure.error_class] += int(count)
            if at is not None and (latest is None or at >= latest.at):
                latest = failure
        return Failures(MappingProxyType(dict(by_class)), latest, _last_minutes(minutes))

    def newest(self, executions: Iterable[Execution], labels: _Labels) -> "Failures":
        """The newest failure among executions fetched but not counted (older than what the
        cursor counts: Mudbase's stats had reported them, so they are unobserved), if newer
        than the latest: why it fails is known, though the failure is not counted."""
        failed = [
            e
            for e in executions
            if e.executed_at is not None
            and labels(e)[0] == "failure"
            and (self.latest is None or e.executed_at.timestamp() > self.latest.at)
        ]
        if not failed:
            return self
        execution = max(failed, key=lambda e: e.executed_at or 0)
        by_class = Counter(self.by_class)
        latest = _failure(execution, labels(execution)[1:], by_class)
        by_class[latest.error_class] += 0  # a class from here on, from 0
        return Failures(MappingProxyType(dict(by_class)), latest, self.recent)

    def recent_ratio(self, now: float) -> RecentRatio:
        """The executions seen dated in the `RECENT_WINDOW` before `now`, and their successes
        (whole minutes: a minute counts if it ends inside the window)."""
        since = (now - RECENT_WINDOW) / _MINUTE - 1
        successes = failures = 0
        for minute, ok, bad in _triples(self.recent):  # it runs for every function a ranking
            if minute > since:
                successes += ok
                failures += bad
        return RecentRatio(successes, successes + failures)


def _failure(
    execution: Execution, trigger_and_invoker: tuple[str, str], by_class: Mapping[str, int]
) -> LatestFailure:
    """A failed execution as the latest failure: its class bounded by the classes kept."""
    folded = error_class(execution.error)
    error = bounded_class(folded, by_class.keys())
    at = execution.executed_at.timestamp() if execution.executed_at else -math.inf
    return LatestFailure(error, *trigger_and_invoker, at, folded)


def _triples(flat: "array[int]") -> Iterator[tuple[int, int, int]]:
    values = iter(flat)
    return zip(values, values, values, strict=True)


def _last_minutes(minutes: Mapping[int, tuple[int, int]]) -> "array[int]":
    if not minutes:
        return array("q")
    newest = max(minutes)
    return array(
        "q",
        (
            number
            for minute, (ok, bad) in sorted(minutes.items())
            if minute > newest - _RECENT_MINUTES
            for number in (minute, ok, bad)
        ),
    )
