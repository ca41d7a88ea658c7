"""The per-function renderer against a golden exposition (set UPDATE_GOLDEN=1 to rewrite it).

The golden file was first written by prometheus_client's `generate_latest` from metric families;
the renderer must keep writing the same bytes.
"""

import math
import os
from datetime import UTC, datetime
from pathlib import Path

from exporter.collector import FunctionRenderer, format_value
from exporter.executions import ExecutionTotals
from exporter.state import StateStore
from exporter.targets import FunctionInfo, FunctionSettings, TargetKey
from exporter.upstream import Execution, FunctionStats

GOLDEN = Path(__file__).resolve().parent.parent / "testdata" / "golden" / "functions.txt"
FULL = FunctionStats(
    total_executions=42,
    successful_executions=40,
    failed_executions=2,
    success_ratio=0.9524,
    avg_execution_seconds=0.125,
    last_run_timestamp=1705314600.0,
)
HEALTHY = TargetKey("shop", "checkout")
SPARSE = TargetKey("shop", "sparse")
FAILING = TargetKey("shop", "failing")
EXPIRED = TargetKey("ops", "expired")
DELETED = TargetKey("ops", "deleted")
PENDING = TargetKey("ops", "pending")
QUOTED = TargetKey('we"ird', "fn")
DISCOVERED = TargetKey("disc", "hello")


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def build_state() -> StateStore:
    state = StateStore()
    default = FunctionSettings(slo_objective=0.99)
    settings = dict.fromkeys([HEALTHY, SPARSE, FAILING, EXPIRED, DELETED, PENDING, QUOTED], default)
    settings[SPARSE] = FunctionSettings(slo_objective=0.999, expected_run_interval=3600)
    state.set_targets(settings, discovered_projects=["disc"])
    found = {DISCOVERED: (default, FunctionInfo('Say "hi"', "http", True))}
    state.sync_project("disc", found)
    state.record_success(DISCOVERED, FunctionStats(total_executions=3), now=1000.0)
    for key in (HEALTHY, FAILING, EXPIRED, DELETED, QUOTED):
        state.record_success(key, FULL, now=1000.0)
    state.record_success(SPARSE, FunctionStats(total_executions=7), now=1000.0)
    state.record_executions(HEALTHY, observed_executions(), replacing=None)
    state.record_executions(
        FAILING, ExecutionTotals(placed=False).place([], total=0), replacing=None
    )
    state.record_failure(FAILING, "server_error", 1100.0, keep_values_for=180, drop_values=False)
    state.record_failure(EXPIRED, "timeout", 1300.0, keep_values_for=180, drop_values=False)
    state.record_failure(DELETED, "not_found", 1010.0, keep_values_for=180, drop_values=True)
    return state


def observed_executions() -> ExecutionTotals:
    """Placed at 40 executions; then 2 more reported, and 4 new ones seen (the stats lag)."""
    totals = ExecutionTotals(placed=False).place(
        [Execution("e0", moment(100), 0.1, True, "http", "trigger")], 40
    )
    seen = [
        Execution("e1", moment(101), 0.004, True, "http", "trigger"),
        Execution("e2", moment(102), 0.3, False, "http", "trigger", 'Bad "input" \\ 7\nat x'),
        Execution("e3", moment(103), 200.0, None, "queue", None),
        Execution("e4", moment(104), None, True, "http", "manual"),
    ]
    return totals.advance(seen, 42)


def render(state: StateStore) -> str:
    return FunctionRenderer(state).render().decode()


def test_exposition_matches_golden_file() -> None:
    text = render(build_state())
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_removed_target_disappears() -> None:
    state = build_state()
    state.set_targets([HEALTHY])
    text = render(state)
    assert 'function="failing"' not in text
    assert 'mudbase_function_up{function="checkout",project="shop"} 1.0' in text


def test_failing_target_keeps_values_then_loses_them_but_keeps_up() -> None:
    text = render(build_state())
    assert 'mudbase_function_executions{function="failing",project="shop"} 42.0' in text
    assert 'mudbase_function_up{function="failing",project="shop"} 0.0' in text
    assert 'mudbase_function_executions{function="expired",project="ops"}' not in text
    assert 'mudbase_function_up{function="expired",project="ops"} 0.0' in text
    assert 'mudbase_function_executions{function="deleted",project="ops"}' not in text
    assert 'mudbase_function_up{function="pending"' not in text
    assert 'mudbase_function_slo_objective{function="pending",project="ops"} 0.99' in text


def test_a_render_after_changes_equals_a_fresh_render() -> None:
    """Each function's lines are kept between renders: only changed functions are redone."""
    state = build_state()
    renderer = FunctionRenderer(state)
    first = renderer.render()
    assert first == FunctionRenderer(state).render()
    state.record_success(HEALTHY, FunctionStats(total_executions=43), now=2000.0)
    state.record_executions(SPARSE, ExecutionTotals(placed=False).place([], 7), replacing=None)
    state.set_targets([HEALTHY, SPARSE, PENDING])
    again = renderer.render()
    assert again != first
    assert again == FunctionRenderer(state).render()
    assert b'mudbase_function_executions{function="checkout",project="shop"} 43.0' in again
    assert b'function="failing"' not in again


def test_special_values() -> None:
    assert [format_value(v) for v in (math.inf, -math.inf, math.nan)] == ["+Inf", "-Inf", "NaN"]
