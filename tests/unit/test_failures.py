"""A function's failures: the latest one, counts by class, bounded, and its recent ratio."""

from datetime import UTC, datetime

from exporter.errorclass import MAX_CLASSES, OTHER_CLASS
from exporter.executions import kind_of
from exporter.failures import RECENT_WINDOW, Failures
from exporter.upstream import Execution


def execution(at: float, error: str | None = None, success: bool = False) -> Execution:
    when = datetime.fromtimestamp(at, UTC)
    return Execution(f"e{at}", when, 0.1, success, "document", "trigger", error)


def test_failures_are_counted_by_class_and_the_newest_is_the_latest() -> None:
    failures = Failures().seen(
        [execution(1010, "Timeout after 5 s"), execution(1000, "Timeout after 9 s")],
        kind_of,
        count=True,
    )
    failures = failures.seen([execution(990, "ECONNRESET")], kind_of, count=True)
    assert dict(failures.by_class) == {"Timeout after <n> s": 2, "ECONNRESET": 1}
    assert failures.latest is not None
    # a late arrival dated before the latest failure does not replace it
    assert (failures.latest.error_class, failures.latest.at) == ("Timeout after <n> s", 1010)
    assert (failures.latest.trigger_type, failures.latest.invoked_by) == ("document", "trigger")


def test_a_first_answer_seeds_classes_at_zero() -> None:
    failures = Failures().seen([execution(1000, "Timeout")], kind_of, count=False)
    assert dict(failures.by_class) == {"Timeout": 0}
    assert failures.latest is not None
    assert failures.latest.error_class == "Timeout"


def test_classes_beyond_the_bound_are_other_and_so_is_the_latest() -> None:
    failures = Failures()
    for n in range(MAX_CLASSES + 5):
        failures = failures.seen(
            [execution(1000 + n, f"error kind {'abcdefghij'[n]}")], kind_of, count=True
        )
    assert len(failures.by_class) == MAX_CLASSES + 1
    assert failures.by_class[OTHER_CLASS] == 5
    assert failures.latest is not None
    assert failures.latest.folded == "error kind i"  # its own, for the status page
    assert failures.latest is not None
    assert failures.latest.error_class == OTHER_CLASS


def test_the_recent_ratio_counts_executions_dated_in_the_window() -> None:
    now = 100_000.0
    old = [execution(now - RECENT_WINDOW - 120, success=True) for _ in range(1)]
    recent = [
        execution(now - 30, "Timeout"),
        execution(now - 40, success=True),
        execution(now - 600, "Timeout"),
        execution(now - 610, success=True),
    ]
    failures = Failures().seen([*old, *recent], kind_of, count=True)
    ratio = failures.recent_ratio(now)
    assert (ratio.successes, ratio.executions, ratio.ratio) == (2, 4, 0.5)
    assert Failures().recent_ratio(now).ratio is None  # nothing seen: no ratio
    assert failures.recent_ratio(now + 2 * RECENT_WINDOW).ratio is None  # all of it too old
    assert len(failures.recent) <= 3 * RECENT_WINDOW / 60  # (minute, successes, failures)
