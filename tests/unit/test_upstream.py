"""Parsing Mudbase's logs answers: both stats dialects, sparse answers, wrong types."""

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.upstream import FunctionStats, UpstreamFormatError, parse_logs

LAST_RUN = datetime(2024, 1, 15, 10, 30, tzinfo=UTC).timestamp()


def body(stats: dict[str, Any] | None = None, **data: Any) -> bytes:
    payload: dict[str, Any] = {"success": True, "data": {**data}}
    if stats is not None:
        payload["data"]["stats"] = stats
    return json.dumps(payload).encode()


def logs_stats(answer: bytes) -> FunctionStats:
    return parse_logs(answer).stats


def test_docs_dialect() -> None:
    stats = logs_stats(
        body(
            {
                "totalExecutions": 42,
                "successful": 40,
                "failed": 2,
                "successRate": 95.24,
                "avgExecutionTime": 125,
                "lastRun": "2024-01-15T10:30:00.000Z",
            }
        )
    )
    assert stats.success_ratio == pytest.approx(0.9524)
    assert replace(stats, success_ratio=None) == FunctionStats(
        total_executions=42,
        successful_executions=40,
        failed_executions=2,
        avg_execution_seconds=0.125,
        last_run_timestamp=LAST_RUN,
    )


def test_openapi_dialect_derives_the_ratio_from_counts() -> None:
    stats = logs_stats(
        body(
            {
                "totalExecutions": 40,
                "successfulExecutions": 30,
                "failedExecutions": 10,
                "avgExecutionTime": 2500.5,
                "lastExecution": "2024-01-15T10:30:00Z",
            }
        )
    )
    assert stats.success_ratio == 0.75
    assert stats.failed_executions == 10
    assert stats.avg_execution_seconds == pytest.approx(2.5005)
    assert stats.last_run_timestamp == LAST_RUN


def test_ratio_from_failed_count_when_successful_is_missing() -> None:
    assert logs_stats(body({"totalExecutions": 10, "failed": 1})).success_ratio == 0.9


def test_no_executions_means_no_ratio_not_a_division_by_zero() -> None:
    stats = logs_stats(body({"totalExecutions": 0, "successfulExecutions": 0}))
    assert stats.total_executions == 0
    assert stats.success_ratio is None


def test_sparse_answer_keeps_what_is_there() -> None:
    assert logs_stats(body({"totalExecutions": 7})) == FunctionStats(total_executions=7)
    assert logs_stats(body()) == FunctionStats()
    assert logs_stats(body({"totalExecutions": None, "failed": 3})) == FunctionStats(
        failed_executions=3
    )


def test_last_run_falls_back_to_the_newest_execution() -> None:
    stats = logs_stats(
        body(
            {"totalExecutions": 2},
            executions=[
                {"executedAt": "2024-01-15T10:29:00Z"},
                {"executedAt": "2024-01-15T10:30:00Z"},
                {"success": False},
            ],
        )
    )
    assert stats.last_run_timestamp == LAST_RUN


def test_timestamp_without_zone_is_utc() -> None:
    stats = logs_stats(body({"lastRun": "2024-01-15T10:30:00"}))
    assert stats.last_run_timestamp == LAST_RUN


def test_numbers_as_strings_are_accepted() -> None:
    assert logs_stats(body({"totalExecutions": "42"})).total_executions == 42


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b"not json", "body"),
        (b'{"success": true, "data": {', "body"),
        (b"[]", "body"),
        (b'{"success": true}', "data"),
        (body({"totalExecutions": "many"}), "data.stats.totalExecutions"),
        (body({"failed": [1]}), "data.stats.failed"),
        (body({"lastRun": "yesterday"}), "data.stats.lastRun"),
        (body(executions={"not": "a list"}), "data.executions"),
    ],
)
def test_malformed_or_wrong_types_are_format_errors(raw: bytes, where: str) -> None:
    with pytest.raises(UpstreamFormatError) as caught:
        logs_stats(raw)
    assert str(caught.value).startswith(where)


def test_success_false_is_a_format_error() -> None:
    with pytest.raises(UpstreamFormatError, match="success: false"):
        logs_stats(b'{"success": false, "data": {}}')


def test_out_of_range_numbers_are_dropped_alone() -> None:
    stats = logs_stats(
        body({"totalExecutions": 10, "failed": -1, "successRate": 120, "avgExecutionTime": -5})
    )
    assert stats == FunctionStats(total_executions=10)


def test_zero_executions_has_no_ratio_even_with_a_success_rate() -> None:
    stats = logs_stats(body({"totalExecutions": 0, "successRate": 0}))
    assert stats.success_ratio is None
    assert stats.total_executions == 0


def test_a_broken_execution_is_left_out_not_the_whole_answer() -> None:
    good = {"_id": "a", "executedAt": "2024-01-15T10:30:00Z", "executionTime": 125, "success": True}
    page = parse_logs(
        body(
            {"totalExecutions": 4},
            executions=[good, {"_id": 7, "invokedBy": {"x": 1}}, "not an object", None],
        )
    )
    assert page.stats.total_executions == 4
    assert [e.id for e in page.executions] == ["a"]
    assert page.executions[0].duration_seconds == 0.125


def test_a_naive_execution_time_is_read_as_utc_and_infinite_durations_are_dropped() -> None:
    page = parse_logs(
        b'{"data": {"executions": [{"executedAt": "2024-01-15T10:30:00", "executionTime": 1e400}],'
        b' "stats": {"avgExecutionTime": 1e400}}}'
    )
    assert page.executions[0].executed_at == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert page.executions[0].duration_seconds is None
    assert page.stats.avg_execution_seconds is None
    assert page.stats.last_run_timestamp == LAST_RUN
