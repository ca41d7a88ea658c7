"""Execution totals: the cursor, bounded label values, unobserved executions, the histogram."""

from datetime import UTC, datetime, timedelta

import pytest

from exporter.executions import (
    DURATION_BUCKETS,
    LOOKBACK,
    MAX_SEEN,
    ExecutionTotals,
    NewExecutions,
    kind_of,
    page_limit,
)
from exporter.upstream import Execution


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def run(serial: int, at: float | None = None, seconds: float | None = 0.1) -> Execution:
    return Execution(
        f"e{serial}", moment(1000 + serial if at is None else at), seconds, True, "http"
    )


def test_label_values_are_bounded_sets() -> None:
    assert kind_of(Execution(success=False, trigger_type="document", invoked_by="cron")) == (
        "failure",
        "document",
        "cron",
    )
    assert kind_of(Execution(trigger_type="kafka-topic-7", invoked_by="robot")) == (
        "unknown",
        "other",
        "other",
    )
    assert kind_of(Execution(success=True, trigger_type="")) == ("success", "unknown", "unknown")


def test_both_outcomes_of_a_seen_trigger_and_invoker_are_counted_from_zero() -> None:
    """A failure counter exists at 0 before the first failure (increase() ignores a series'
    first sample: a counter born at 50 failures would show none of them)."""
    first = Execution("e0", moment(1000), 0.1, True, "http", "trigger")
    placed = ExecutionTotals(placed=False).place([first], total=1)
    assert placed.counts == {("success", "http", "trigger"): 0, ("failure", "http", "trigger"): 0}
    manual = Execution("e1", moment(1001), 0.1, True, "http", "manual")
    failed = Execution("e2", moment(1002), 0.1, False, "http", "trigger")
    counted = placed.advance([manual, failed], total=3)
    assert counted.counts == {
        ("success", "http", "trigger"): 0,
        ("failure", "http", "trigger"): 1,
        ("success", "http", "manual"): 1,
        ("failure", "http", "manual"): 0,
    }


def test_executions_at_the_same_instant_are_told_apart_by_id() -> None:
    totals = ExecutionTotals(placed=False).place([run(1, at=50.0)], total=1)
    same_instant = [run(2, at=50.0), run(1, at=50.0)]
    assert totals.cursor.new_of(same_instant) == [run(2, at=50.0)]
    after = totals.advance([run(2, at=50.0)], total=2)
    assert after.cursor.new_of(same_instant) == []


def test_an_execution_without_a_time_is_never_counted() -> None:
    totals = ExecutionTotals(placed=False).place([], total=0)
    undated = Execution("x", None, 0.1, True)
    assert totals.cursor.new_of([undated]) == []
    assert totals.advance([], total=1).unobserved == 1  # the stats saw it: it is unobserved


def test_stats_that_lag_the_executions_do_not_count_unobserved_ones() -> None:
    totals = ExecutionTotals(placed=False).place([], total=10)
    totals = totals.advance([run(1), run(2), run(3)], total=11)  # the stats lag by two
    assert totals.unobserved == 0
    totals = totals.advance([], total=13)  # and catch up
    assert totals.unobserved == 0
    totals = totals.advance([run(4)], total=16)  # two more than seen
    assert totals.unobserved == 2


def test_a_shrinking_total_counts_nothing_and_moves_the_baseline() -> None:
    totals = (
        ExecutionTotals(placed=False).place([], total=500).advance([], total=20)
    )  # retention, recreation
    assert totals.unobserved == 0
    assert totals.advance([run(1)], total=22).unobserved == 1


def test_durations_fall_into_le_buckets() -> None:
    executions = [run(1, seconds=0.005), run(2, seconds=0.0051), run(3, seconds=500.0)]
    executions.append(run(4, seconds=None))
    totals = ExecutionTotals(placed=False).place([], total=0).advance(executions, total=4)
    cumulative = dict(totals.cumulative_buckets())
    assert cumulative[0.005] == 1  # le: at most the bound
    assert cumulative[0.01] == 2
    assert cumulative[DURATION_BUCKETS[-1]] == 2
    assert cumulative[float("inf")] == 3  # the execution with no time is not in the histogram
    assert totals.duration_sum == pytest.approx(500.0101)
    assert sum(totals.counts.values()) == 4  # but it is counted


@pytest.mark.parametrize(
    ("expected", "limit"), [(None, 100), (0, 10), (3, 16), (45, 100), (10_000, 100)]
)
def test_the_page_asked_for_follows_the_expected_new_executions(
    expected: int | None, limit: int
) -> None:
    assert page_limit(expected) == limit


def test_expected_new_executions_come_from_a_listed_total_or_the_last_poll() -> None:
    totals = ExecutionTotals(placed=False).place([], total=10).advance([], total=17)
    assert totals.expected_new(None) == 7
    assert totals.expected_new(30) == 13
    assert totals.expected_new(3) == 7  # a shrinking total says nothing: the last pace
    just_placed = ExecutionTotals(placed=False).place([], total=10)
    assert just_placed.expected_new(None) is None  # no pace yet: the next poll asks a full page
    assert just_placed.expected_new(12) == 2


def test_paging_stops_at_the_cursor_or_at_a_short_page() -> None:
    cursor = ExecutionTotals(placed=False).place([run(10)], total=10).cursor
    pages = NewExecutions(cursor)
    assert pages.add_page([run(14), run(13)], limit=2) is True
    assert pages.add_page([run(13), run(12)], limit=2) is True  # shifted: run 13 again
    assert pages.add_page([run(11), run(10)], limit=2) is False  # reached the cursor
    assert [e.id for e in pages.found] == ["e14", "e13", "e12", "e11"]
    assert NewExecutions(cursor).add_page([run(11)], limit=2) is False  # the end of the list


def test_an_execution_dated_in_the_future_neither_counts_nor_moves_the_cursor() -> None:
    future = Execution("soon", datetime.now(UTC) + timedelta(days=365), 0.1, True)
    totals = ExecutionTotals(placed=False).place([future, run(1)], total=2)
    assert totals.cursor.newest == 1001.0
    assert totals.cursor.new_of([future, run(2)]) == [run(2)]


def test_an_execution_that_shows_up_after_newer_ones_is_counted_once_inside_the_window() -> None:
    totals = ExecutionTotals(placed=False).place([run(10)], total=10)
    totals = totals.advance(totals.cursor.new_of([run(12), run(11), run(10)]), total=12)
    late = Execution("late", moment(1010.5), 30.0, False, "http")  # started at 1010.5, ran 30 s
    page = [run(13), run(12), late, run(11), run(10)]
    new = totals.cursor.new_of(page)
    assert new == [run(13), late]
    totals = totals.advance(new, total=14)
    assert totals.cursor.new_of(page) == []  # seen: never counted twice
    assert totals.counts[("failure", "http", "unknown")] == 1
    assert totals.unobserved == 0
    before_placing = Execution("old", moment(1009), 30.0, False, "http")
    assert totals.cursor.new_of([before_placing]) == []  # older than the first answer: history


def test_the_window_is_bounded_in_size_and_in_time() -> None:
    totals = ExecutionTotals(placed=False).place([run(0)], total=0)
    burst = [run(i) for i in range(MAX_SEEN + 50, 0, -1)]
    totals = totals.advance(totals.cursor.new_of(burst), total=MAX_SEEN + 50)
    assert len(totals.cursor.seen_ids) == MAX_SEEN  # constant memory
    assert (
        totals.cursor.new_of(burst) == []
    )  # what left the window is below its floor, not new again
    assert totals.cursor.new_of([Execution("late", moment(1010.5), 1.0, False)]) == []  # too old
    assert totals.cursor.new_of([Execution("late", moment(1100.5), 1.0, False)]) != []  # inside it
    later = run(0, at=1000 + MAX_SEEN + 50 + LOOKBACK + 1)
    totals = totals.advance([later], total=MAX_SEEN + 51)
    assert list(totals.cursor.seen_at) == [later.executed_at.timestamp()]  # type: ignore[union-attr]
    assert (
        totals.cursor.new_of([Execution("late", moment(1100.5), 1.0, False)]) == []
    )  # too old now


def test_listings_move_the_unobserved_count_with_the_stats_not_at_the_next_fetch() -> None:
    totals = ExecutionTotals(placed=False).place([run(0)], total=10)
    # listed at 1100 with 5 new: they wait one listing for a logs answer
    totals = totals.listed(15, at=1100)
    assert totals.unobserved == 0
    # listed at 1200 with 5 more, still no logs answer: the first 5 are unobserved now
    totals = totals.listed(20, at=1200)
    assert totals.unobserved == 5
    totals = totals.listed(20, at=1300)  # nothing new: the next 5 are written off too
    assert totals.unobserved == 10
    assert totals.listed(20, at=1400) is totals  # nothing left: the very same totals
    # the late logs answer holds executions written off (dated before the listing at 1200)
    # and 3 run since: only those 3 are counted, and nothing is unobserved twice
    late = [run(n, at=1100 + 10 * n) for n in range(1, 10)]
    late += [run(500, at=1310), run(501, at=1320), run(502, at=1330)]
    fetched = totals.advance(totals.cursor.new_of(late), total=23)
    assert sum(fetched.counts.values()) == 3
    assert fetched.unobserved == 10


def test_a_fetch_after_one_listing_counts_what_that_listing_reported() -> None:
    totals = ExecutionTotals(placed=False).place([run(0)], total=10).listed(14, at=1100)
    assert totals.expected_new(14) == 4  # a logs request asks for the pending ones
    fetched = totals.advance(
        totals.cursor.new_of([run(n, at=1050 + n) for n in range(1, 5)]), total=14
    )
    assert sum(fetched.counts.values()) == 4
    assert fetched.unobserved == 0
    assert fetched.listed(14, at=1200).unobserved == 0
