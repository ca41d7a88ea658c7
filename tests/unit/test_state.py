from datetime import UTC, datetime

from exporter.executions import ExecutionTotals
from exporter.selfmetrics import RequestWindow
from exporter.state import StateStore, TargetKey
from exporter.targets import FunctionInfo, FunctionSettings
from exporter.upstream import Execution, FunctionStats

A = TargetKey("p", "a")
B = TargetKey("p", "b")
STATS = FunctionStats(total_executions=1)


def test_ready_needs_targets_and_every_one_polled() -> None:
    state = StateStore()
    assert not state.ready()
    state.set_targets([A, B])
    state.record_success(A, STATS, 1.0)
    assert not state.ready()
    state.record_failure(B, "timeout", 2.0, keep_values_for=10, drop_values=False)
    assert state.ready()


def test_every_write_moves_the_generation() -> None:
    state = StateStore()
    seen = [state.generation]
    state.set_targets([A])
    seen.append(state.generation)
    state.record_success(A, STATS, 1.0)
    seen.append(state.generation)
    state.record_failure(A, "auth", 2.0, keep_values_for=10, drop_values=False)
    seen.append(state.generation)
    assert seen == sorted(set(seen))


def test_reconfiguring_keeps_state_of_unchanged_targets() -> None:
    state = StateStore()
    state.set_targets([A, B])
    state.record_success(A, STATS, 1.0)
    state.set_targets([A])
    assert state.snapshot()[A].stats == STATS
    assert B not in state.snapshot()


def test_results_for_removed_targets_are_ignored() -> None:
    state = StateStore()
    state.set_targets([A])
    state.record_success(B, STATS, 1.0)
    assert state.record_failure(B, "auth", 1.0, keep_values_for=1, drop_values=False) is None
    assert list(state.snapshot()) == [A]


def test_failures_count_up_and_success_resets() -> None:
    state = StateStore()
    state.set_targets([A])
    for now in (1.0, 2.0, 3.0):
        state.record_failure(A, "timeout", now, keep_values_for=10, drop_values=False)
    assert state.snapshot()[A].consecutive_failures == 3
    assert state.snapshot()[A].last_error_reason == "timeout"
    state.record_success(A, STATS, 4.0)
    assert state.snapshot()[A].consecutive_failures == 0
    assert state.snapshot()[A].up is True


def test_request_window_counts_the_last_fifteen_minutes_in_bounded_memory() -> None:

    window = RequestWindow()
    for i in range(10_000):
        window.add(1000.0 + i / 100)  # 100 requests a second for 100 s
    assert window.count(now=1100.0) == 10_000
    assert len(window._buckets) == 100
    assert window.count(now=1000.0 + 900 + 50.5) == 4_900  # seconds 1000 to 1050 expired


def test_a_late_logs_answer_never_overwrites_newer_execution_counts() -> None:
    """Two logs requests for one function computed from the same totals: the later write loses,
    so a counter never goes down."""
    key = TargetKey("p", "f")
    state = StateStore()
    state.set_targets([key])
    start = ExecutionTotals(placed=False).place([], total=0)
    assert state.record_executions(key, start, replacing=None)
    seven = start.advance(
        [Execution(f"e{i}", datetime(2026, 1, 1, 0, i, tzinfo=UTC)) for i in range(7)], 7
    )
    three = start.advance(
        [Execution(f"e{i}", datetime(2026, 1, 1, 0, i, tzinfo=UTC)) for i in range(3)], 3
    )
    assert state.record_executions(key, seven, replacing=start)
    assert not state.record_executions(key, three, replacing=start)
    current = state.get(key)
    assert current is not None
    assert current.executions is seven


def test_a_listing_or_a_poll_that_changes_nothing_changes_nothing() -> None:
    """An unchanged listing keeps every function's snapshot (the renderer knows an unchanged
    function by its very object) and does not move the generation; so does a poll whose
    result is the one stored, and a changed function replaces its own snapshot only."""
    settings = FunctionSettings(slo_objective=0.99)
    found = {
        TargetKey("p", name): (settings, FunctionInfo(f"fn {name}", "http", True)) for name in "abc"
    }
    state = StateStore()
    state.set_targets({}, discovered_projects=["p"])
    state.sync_project("p", found)
    for key in found:
        state.record_success(key, FunctionStats(total_executions=1), now=5.0)
    before, generation = state.snapshot(), state.generation

    state.sync_project("p", dict(found))  # the same listing again
    state.record_success(TargetKey("p", "a"), FunctionStats(total_executions=1), now=5.0)
    assert state.generation == generation
    assert all(state.snapshot()[key] is before[key] for key in found)

    renamed = {**found, TargetKey("p", "b"): (settings, FunctionInfo("renamed", "http", True))}
    state.sync_project("p", renamed)
    assert state.generation == generation + 1
    after = state.snapshot()
    assert [after[key] is before[key] for key in found] == [True, False, True]


def test_the_exporter_wide_execution_counts_only_go_up() -> None:
    """They add what each function's totals added: a late answer that is refused, a function
    removed and one added again with fresh totals take nothing back."""
    state = StateStore()
    state.set_targets([A, B])
    start = ExecutionTotals(placed=False).place([], total=0)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    runs = [Execution(f"x{n}", when, 0.1, n > 0, "http", "user", None) for n in range(3)]
    state.record_success(A, STATS, 1.0, start.advance(runs, total=5))  # 3 seen, 2 not
    state.record_executions(B, start.advance(runs[:1], total=1), replacing=None)
    assert state.execution_coverage() == (4, 2)
    state.record_executions(B, start.advance([], total=9), replacing=None)  # stale: refused
    assert state.execution_coverage() == (4, 2)
    state.set_targets([B])  # A removed: its counts stay counted
    state.set_targets([A, B])
    state.record_success(A, STATS, 2.0, start.advance(runs[:2], total=2))  # fresh totals
    assert state.execution_coverage() == (6, 2)
