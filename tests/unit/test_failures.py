"""A function's failures: the latest one, counts by class, bounded, and its recent ratio."""

from datetime import UTC, datetime

from exporter.errorclass import MAX_CLASSES, OTHER_CLASS
from exporter.executions import ExecutionTotals, kind_of
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


def test_a_failure_the_listings_wrote_off_still_says_why_it_fails() -> None:
    """A function whose logs came a listing too late: its failure is older than what the
    cursor counts (the listings counted it as unobserved), yet it is on the page fetched, and
    it is the function's latest failure; it is not counted, and nothing counted twice."""
    totals = ExecutionTotals(placed=False).place([], total=10).listed(10, at=900)
    totals = totals.listed(11, at=1000)  # failed at 950, reported by the listing at 1000
    totals = totals.listed(12, at=1100)  # no logs yet: written off; ran fine at 1050
    assert totals.unobserved == 1
    page = [execution(1050, success=True), execution(950, "Timeout")]
    new = totals.new_executions()
    new.add_page(page, limit=10)
    assert [e.executed_at.timestamp() for e in new.found if e.executed_at] == [1050]
    advanced = totals.advance(new.found, 12, fetched=page)
    latest = advanced.failures.latest
    assert latest is not None
    assert (latest.error_class, latest.at) == ("Timeout", 950)
    assert dict(advanced.failures.by_class) == {"Timeout": 0}
    assert advanced.unobserved == 1
    # without the page, nothing would say why
    assert totals.advance(new.found, 12).failures.latest is None
    # a newer failure counted since stays the latest
    later = advanced.failures.seen([execution(1200, "ECONNRESET")], kind_of, count=True)
    assert later.newest(page, kind_of).latest == later.latest
