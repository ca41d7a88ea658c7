"""Contract test: the official Mudbase SDK (1.3.17) parses what the simulator serves.

The SDK's generated pydantic models are the executable form of Mudbase's OpenAPI document,
so driving the real simulator process with them checks the simulator against the spec.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import mudbase
import pytest
from mudbase.exceptions import ApiException, NotFoundException, UnauthorizedException

from tests.helpers import SIM_TOKEN, SimulatorProcess, wait_for

# The enums the SDK's models validate against (FunctionExecution.invoked_by_validate_enum and
# FunctionTrigger.type_validate_enum in mudbase 1.3.17).
SDK_INVOKERS = {"manual", "api_key", "trigger", "cron"}
SDK_TRIGGER_TYPES = {"http", "event", "document", "file", "webhook", "cron", "messaging"}
KNOWN_EXECUTIONS = 20


@contextmanager
def sdk_functions_api(url: str, token: str) -> Iterator[mudbase.FunctionsApi]:
    """The SDK's FunctionsApi against `url`, with `token` as the bearer token."""
    configuration = mudbase.Configuration(host=url, access_token=token)
    with mudbase.ApiClient(configuration) as client:
        try:
            yield mudbase.FunctionsApi(client)
        finally:
            # ApiClient.__exit__ does nothing: close the pooled sockets ourselves
            client.rest_client.pool_manager.clear()


@pytest.fixture
def api(simulator: SimulatorProcess) -> Iterator[mudbase.FunctionsApi]:
    with sdk_functions_api(simulator.url, SIM_TOKEN) as functions_api:
        yield functions_api


def frozen_function_with_executions(
    simulator: SimulatorProcess, project: str, function: str, **options: Any
) -> dict[str, Any]:
    """A function with KNOWN_EXECUTIONS or more logged executions, then rate 0: stats hold still.

    `initial_executions` only seeds the counters, not the execution log, so the function runs
    fast until it has logged enough executions and is then stopped with rate_per_minute=0.
    """
    simulator.put_function(project, function, rate_per_minute=6000, **options)
    wanted = int(options.get("initial_executions", 0)) + KNOWN_EXECUTIONS
    wait_for(
        lambda: simulator.stats(project, function)["totalExecutions"] >= wanted,
        10,
        f"{project}/{function} to log {KNOWN_EXECUTIONS} executions",
    )
    simulator.put_function(project, function, rate_per_minute=0)
    stats = simulator.stats(project, function)
    assert simulator.stats(project, function) == stats, "the stats still move at rate 0"
    return stats


def get_logs(
    api: mudbase.FunctionsApi, project: str, function: str, limit: int, offset: int = 0
) -> tuple[list[mudbase.FunctionExecution], mudbase.FunctionStats]:
    """The SDK's parsed logs envelope, checked to be complete."""
    response = api.get_function_logs(project, function, limit=limit, offset=offset)
    assert isinstance(response, mudbase.FunctionLogsResponse)
    assert response.success is True
    assert isinstance(response.data, mudbase.FunctionLogsResponseData)
    assert response.data.executions is not None
    assert isinstance(response.data.stats, mudbase.FunctionStats)
    return response.data.executions, response.data.stats


def list_page(
    api: mudbase.FunctionsApi, project: str, page: int, limit: int
) -> tuple[list[mudbase.Function], mudbase.Pagination]:
    """The SDK's parsed function list envelope, checked to be complete."""
    response = api.list_functions(project, page=page, limit=limit)
    assert isinstance(response, mudbase.FunctionListResponse)
    assert response.success is True
    assert isinstance(response.data, mudbase.FunctionListResponseData)
    assert response.data.functions is not None
    assert isinstance(response.data.pagination, mudbase.Pagination)
    return response.data.functions, response.data.pagination


def ids(executions: list[mudbase.FunctionExecution]) -> list[str]:
    found = [execution.id for execution in executions]
    assert all(isinstance(one, str) and one for one in found)
    return [str(one) for one in found]


def parse_sim_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def error_code(error: ApiException) -> str:
    assert error.body is not None
    code: str = json.loads(error.body)["code"]
    return code


def check_executions(executions: list[mudbase.FunctionExecution], trigger_type: str) -> None:
    assert executions
    for execution in executions:
        assert isinstance(execution, mudbase.FunctionExecution)
        assert isinstance(execution.executed_at, datetime)
        assert execution.executed_at.utcoffset() is not None
        assert execution.executed_at <= datetime.now(UTC)
        assert isinstance(execution.execution_time, int)
        assert execution.execution_time >= 1
        assert execution.invoked_by in SDK_INVOKERS
        assert execution.trigger_type == trigger_type
        assert execution.retry_count == 0
        assert isinstance(execution.success, bool)
        if execution.success:
            assert execution.result == {"ok": True}
            assert execution.error is None
        else:
            assert isinstance(execution.error, str)
            assert execution.result is None
    # newest first
    times = [execution.executed_at for execution in executions]
    assert times == sorted(times, key=lambda t: t or datetime.min, reverse=True)
    every_id = ids(executions)
    assert len(set(every_id)) == len(every_id)


def test_openapi_dialect_logs_parse_and_match_the_simulator_state(
    simulator: SimulatorProcess, api: mudbase.FunctionsApi
) -> None:
    project, function = "contract_sdk", "openapi_logs"
    state = frozen_function_with_executions(
        simulator,
        project,
        function,
        dialect="openapi",
        trigger_type="cron",
        failure_ratio=0.3,
        mean_execution_ms=80,
    )

    executions, stats = get_logs(api, project, function, limit=100)

    assert stats.total_executions == state["totalExecutions"] >= KNOWN_EXECUTIONS
    assert stats.successful_executions == state["successfulExecutions"]
    assert stats.failed_executions == state["failedExecutions"]
    assert stats.total_executions == state["successfulExecutions"] + state["failedExecutions"]
    assert stats.avg_execution_time == state["avgExecutionTime"]
    assert isinstance(stats.avg_execution_time, float)
    assert stats.avg_execution_time > 0
    assert isinstance(stats.last_execution, datetime)
    assert stats.last_execution == parse_sim_time(state["lastExecution"])

    # no initial_executions: every execution is in the log (fewer than the 100 asked for)
    assert len(executions) == stats.total_executions
    check_executions(executions, "cron")
    assert sum(1 for e in executions if not e.success) == stats.failed_executions
    assert executions[0].executed_at == stats.last_execution
    every_id = ids(executions)

    # a slice in the middle
    middle, _ = get_logs(api, project, function, limit=5, offset=3)
    assert ids(middle) == every_id[3:8]

    # consecutive pages: distinct ids that add up to the head of the log
    paged: list[str] = []
    for offset in (0, 4, 8):
        page, page_stats = get_logs(api, project, function, limit=4, offset=offset)
        assert len(page) == 4
        assert page_stats == stats
        paged.extend(ids(page))
    assert len(set(paged)) == 12
    assert paged == every_id[:12]

    # past the end: an empty page, the stats still there
    beyond, beyond_stats = get_logs(api, project, function, limit=10, offset=len(every_id))
    assert beyond == []
    assert beyond_stats == stats


def test_docs_dialect_logs_parse_with_the_sdk_ignoring_docs_stats_keys(
    simulator: SimulatorProcess, api: mudbase.FunctionsApi
) -> None:
    project, function = "contract_sdk", "docs_logs"
    state = frozen_function_with_executions(
        simulator,
        project,
        function,
        dialect="docs",
        trigger_type="document",
        failure_ratio=0.3,
        initial_executions=100,
    )
    # the docs dialect's own keys are what the simulator serves...
    assert {"successful", "failed", "successRate", "lastRun"} <= state.keys()
    assert not {"successfulExecutions", "failedExecutions", "lastExecution"} & state.keys()

    executions, stats = get_logs(api, project, function, limit=100)

    # ...the SDK parses the keys both dialects share...
    assert stats.total_executions == state["totalExecutions"] >= 100 + KNOWN_EXECUTIONS
    assert stats.avg_execution_time == state["avgExecutionTime"]
    # ...while FunctionStats has no field for successful/failed/successRate/lastRun: the SDK
    # ignores them without an error, and leaves its own OpenAPI-named fields unset.
    assert stats.successful_executions is None
    assert stats.failed_executions is None
    assert stats.last_execution is None

    # initial_executions seeds the counters only: the log holds the executions that ran
    assert len(executions) == state["totalExecutions"] - 100
    check_executions(executions, "document")
    assert all(e.trigger_event == "create" for e in executions)
    assert executions[0].executed_at == parse_sim_time(state["lastRun"])


def test_list_functions_pages_and_parses(
    simulator: SimulatorProcess, api: mudbase.FunctionsApi
) -> None:
    project = "contract_sdk_list"
    configured: dict[str, tuple[str, bool, int]] = {
        # id: (trigger type, active, initial executions)
        "fn_a": ("http", True, 10),
        "fn_b": ("cron", False, 20),
        "fn_c": ("document", True, 30),
        "fn_d": ("webhook", True, 40),
        "fn_e": ("event", False, 0),
    }
    for function_id, (trigger_type, active, initial) in configured.items():
        # the list always serves stats in the OpenAPI dialect, whatever the function's dialect
        simulator.put_function(
            project,
            function_id,
            dialect="docs" if function_id in {"fn_a", "fn_c"} else "openapi",
            trigger_type=trigger_type,
            active=active,
            initial_executions=initial,
            rate_per_minute=0,
            failure_ratio=0.5,
        )

    seen: list[str] = []
    for page_number, expected_count in ((1, 2), (2, 2), (3, 1)):
        functions, pagination = list_page(api, project, page=page_number, limit=2)
        assert pagination.page == page_number
        assert pagination.limit == 2
        assert pagination.total == 5
        assert pagination.total_pages == 3
        assert len(functions) == expected_count
        for function in functions:
            assert isinstance(function, mudbase.Function)
            assert isinstance(function.id, str)
            trigger_type, active, initial = configured[function.id]
            assert function.project_id == project
            assert function.name == function.id
            assert isinstance(function.trigger, mudbase.FunctionTrigger)
            assert function.trigger.type in SDK_TRIGGER_TYPES
            assert function.trigger.type == trigger_type
            assert function.is_active is active
            assert isinstance(function.created_at, datetime)
            assert isinstance(function.updated_at, datetime)
            stats = function.stats
            assert isinstance(stats, mudbase.FunctionStats)
            assert stats.total_executions == initial
            assert stats.failed_executions == initial // 2
            assert stats.successful_executions == initial - initial // 2
            if initial:
                assert isinstance(stats.last_execution, datetime)
            else:
                assert stats.last_execution is None
            seen.append(function.id)
    assert seen == sorted(configured)

    # one page with everything; past the last page, an empty list with the same totals
    everything, whole = list_page(api, project, page=1, limit=100)
    assert [f.id for f in everything] == sorted(configured)
    assert whole.total_pages == 1
    nothing, beyond = list_page(api, project, page=4, limit=2)
    assert nothing == []
    assert beyond.total == 5
    assert beyond.total_pages == 3


def test_wrong_token_raises_unauthorized(simulator: SimulatorProcess) -> None:
    simulator.put_function("contract_sdk", "auth_fn", rate_per_minute=0)
    with sdk_functions_api(simulator.url, "not-the-token") as wrong:
        with pytest.raises(UnauthorizedException) as logs_error:
            wrong.get_function_logs("contract_sdk", "auth_fn")
        with pytest.raises(UnauthorizedException) as list_error:
            wrong.list_functions("contract_sdk")
    for error in (logs_error.value, list_error.value):
        assert error.status == 401
        assert error_code(error) == "UNAUTHORIZED"


def test_unknown_function_raises_not_found(api: mudbase.FunctionsApi) -> None:
    with pytest.raises(NotFoundException) as error:
        api.get_function_logs("contract_sdk", "no_such_function")
    assert error.value.status == 404
    assert error_code(error.value) == "NOT_FOUND"
