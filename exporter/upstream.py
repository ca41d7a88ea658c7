"""Mudbase's JSON answers, parsed in one place.

Both `stats` dialects Mudbase documents are accepted: the docs page's
`successful/failed/successRate/lastRun` and the OpenAPI schema's
`successfulExecutions/failedExecutions/lastExecution`. Missing or null fields are tolerated;
a field of the wrong JSON type makes the whole answer a `bad_response`; a number out of its
range (a negative count, a success rate above 100) is dropped alone, and the rest published.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, ValidationError

LIST_PAGE_SIZE = 100  # the list endpoint's maximum `limit`: one request answers for 100 functions


class UpstreamFormatError(ValueError):
    """The body is not the JSON shape Mudbase documents."""


@dataclass(frozen=True)
class FunctionStats:
    """One function's stats in exporter units: counts, a 0-1 ratio, seconds, unix time."""

    total_executions: int | None = None
    successful_executions: int | None = None
    failed_executions: int | None = None
    success_ratio: float | None = None
    avg_execution_seconds: float | None = None
    last_run_timestamp: float | None = None


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _in_range(low: float, high: float | None = None) -> AfterValidator:
    """Out of range: treated as missing (no value published), not as a broken answer."""

    def check(value: float | None) -> float | None:
        if value is None or not math.isfinite(value):
            return None
        if value < low or (high is not None and value > high):
            return None
        return value

    return AfterValidator(check)


Count = Annotated[int | None, _in_range(0)]


class _Stats(_Model):
    total_executions: Count = Field(None, alias="totalExecutions")
    successful: Count = Field(
        None, validation_alias=AliasChoices("successful", "successfulExecutions")
    )
    failed: Count = Field(None, validation_alias=AliasChoices("failed", "failedExecutions"))
    success_rate: Annotated[float | None, _in_range(0, 100)] = Field(None, alias="successRate")
    avg_execution_time: Annotated[float | None, _in_range(0)] = Field(
        None, alias="avgExecutionTime"
    )
    last_run: datetime | None = Field(
        None, validation_alias=AliasChoices("lastRun", "lastExecution")
    )


class _Execution(_Model):
    id: str | None = Field(None, alias="_id")
    executed_at: datetime | None = Field(None, alias="executedAt")
    execution_time: Annotated[float | None, _in_range(0)] = Field(None, alias="executionTime")
    success: bool | None = None
    trigger_type: str | None = Field(None, alias="triggerType")
    invoked_by: str | None = Field(None, alias="invokedBy")
    error: Any = None  # documented as text; an object's `message` is taken, anything else not


class _LogsData(_Model):
    executions: list[_Execution] | None = None
    stats: _Stats | None = None


class _LenientLogsData(_Model):
    executions: list[Any] | None = None  # each item validated alone; broken ones are dropped
    stats: _Stats | None = None


class _LenientLogsEnvelope(_Model):
    success: bool | None = None
    data: _LenientLogsData


class _LogsEnvelope(_Model):
    success: bool | None = None
    data: _LogsData


class Execution(NamedTuple):
    """One execution from a logs answer: its time in UTC, its duration in seconds. A named
    tuple, and the time kept as parsed: a hundred of them are made per answer."""

    id: str | None = None
    executed_at: datetime | None = None
    duration_seconds: float | None = None
    success: bool | None = None
    trigger_type: str | None = None
    invoked_by: str | None = None
    error: str | None = None  # the raw text: only ever shown folded (exporter.errorclass)


@dataclass(frozen=True)
class LogsPage:
    """A logs answer: the function's stats, and one page of its executions, newest first."""

    stats: FunctionStats
    executions: tuple[Execution, ...] = ()


def parse_logs(body: bytes) -> LogsPage:
    """A logs answer; UpstreamFormatError if the body is not the documented shape."""
    try:
        envelope: _LogsEnvelope | _LenientLogsEnvelope = _LogsEnvelope.model_validate_json(body)
        raw = envelope.data.executions or []
    except ValidationError as err:
        if not all(_in_an_execution(error["loc"]) for error in err.errors()):
            raise UpstreamFormatError(_summarise(err)) from None
        envelope = _LenientLogsEnvelope.model_validate_json(body)
        raw = _valid_executions(envelope.data.executions or [])
    if envelope.success is False:
        raise UpstreamFormatError("answer says success: false")
    stats = envelope.data.stats or _Stats.model_validate({})
    executions = tuple(_to_execution(e) for e in raw)
    newest = max((e.executed_at for e in executions if e.executed_at is not None), default=None)
    return LogsPage(_to_function_stats(stats, newest), executions)


def _in_an_execution(location: tuple[int | str, ...]) -> bool:
    return location[:2] == ("data", "executions") and len(location) > 2


def _valid_executions(items: list[Any]) -> list[_Execution]:
    """An execution with a field of the wrong type is left out (the stats still count it, as
    unobserved), rather than failing the whole answer: it is one of up to a hundred."""
    valid = []
    for item in items:
        try:
            valid.append(_Execution.model_validate(item))
        except ValidationError:
            continue
    return valid


def _to_execution(raw: _Execution) -> Execution:
    at, millis = raw.executed_at, raw.execution_time
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # Mudbase's times are UTC; naive ones are read as UTC
    return Execution(
        raw.id,
        at,
        None if millis is None else millis / 1000,
        raw.success,
        raw.trigger_type,
        raw.invoked_by,
        _error_text(raw.error),
    )


def _error_text(error: Any) -> str | None:
    """The error's text: a string, or an error object's `message` (some runtimes send one)."""
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) else None


class _Trigger(_Model):
    type: str | None = None


class _FunctionSummary(_Model):
    id: str = Field(alias="_id")
    name: str | None = None
    is_active: bool | None = Field(None, alias="isActive")
    trigger: _Trigger | None = None
    stats: _Stats | None = None


class _Pagination(_Model):
    page: int | None = None
    total_pages: int | None = Field(None, alias="totalPages")
    total: int | None = None


class _ListData(_Model):
    functions: list[_FunctionSummary]
    pagination: _Pagination | None = None


class _ListEnvelope(_Model):
    success: bool | None = None
    data: _ListData


@dataclass(frozen=True)
class FunctionSummary:
    """One function from the list endpoint: what it is, and its stats (OpenAPI dialect)."""

    id: str
    name: str
    active: bool | None
    trigger_type: str
    stats: FunctionStats


@dataclass(frozen=True)
class FunctionPage:
    functions: list[FunctionSummary]
    total_pages: int


def parse_function_list(body: bytes) -> FunctionPage:
    """One page of the list endpoint; UpstreamFormatError if it is not the documented shape."""
    try:
        envelope = _ListEnvelope.model_validate_json(body)
    except ValidationError as err:
        raise UpstreamFormatError(_summarise(err)) from None
    if envelope.success is False:
        raise UpstreamFormatError("answer says success: false")
    functions = [
        FunctionSummary(
            id=f.id,
            name=f.name or f.id,
            active=f.is_active,
            trigger_type=(f.trigger.type if f.trigger and f.trigger.type else "unknown"),
            stats=_to_function_stats(f.stats or _Stats.model_validate({}), None),
        )
        for f in envelope.data.functions
    ]
    pages = envelope.data.pagination.total_pages if envelope.data.pagination else None
    return FunctionPage(functions, pages or 1)


def _to_function_stats(stats: _Stats, newest_execution: datetime | None) -> FunctionStats:
    last_run = stats.last_run or newest_execution
    return FunctionStats(
        total_executions=stats.total_executions,
        successful_executions=stats.successful,
        failed_executions=stats.failed,
        success_ratio=_success_ratio(stats),
        avg_execution_seconds=(
            stats.avg_execution_time / 1000 if stats.avg_execution_time is not None else None
        ),
        last_run_timestamp=_unix_time(last_run) if last_run is not None else None,
    )


def _unix_time(moment: datetime) -> float:
    """Mudbase's timestamps are UTC; one without a zone is read as UTC, not local time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _success_ratio(stats: _Stats) -> float | None:
    total = stats.total_executions
    if total == 0:
        return None  # no executions: no rate, whatever successRate says (often 0)
    if stats.success_rate is not None:
        return stats.success_rate / 100
    if total is None:
        return None
    if stats.successful is not None:
        return min(stats.successful / total, 1.0)
    if stats.failed is not None:
        return max((total - stats.failed) / total, 0.0)
    return None


def _summarise(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
