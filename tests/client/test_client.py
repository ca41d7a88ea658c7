"""MudbaseClient against a respx-mocked Mudbase: parsing, auth, retry, typed errors.

Nothing here really sleeps: the client gets a fake `sleep` that records the delays it was asked
for and returns at once, and the request planner's pauses run on looptime's fake loop clock.
"""

import asyncio
import contextlib
import email.utils
import itertools
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from exporter.auth import Credential, FileToken, StaticToken
from exporter.client import MudbaseClient, RetryPolicy
from exporter.errors import PollError, Reason
from exporter.planner import (
    POLL_DEADLINE,
    UNHINTED_PAUSE,
    RequestKind,
    RequestPlanner,
    refill_rate,
)
from exporter.selfmetrics import ExporterMetrics
from exporter.upstream import FunctionStats

BASE = "https://mudbase.test"
TOKEN = "tok-8c1f0a5e93d2"
NEW_TOKEN = "tok-rotated-47b1e2"
PROJECT = "proj-1"
FUNCTION = "fn-1"
LOGS_URL = f"{BASE}/api/functions/projects/{PROJECT}/functions/{FUNCTION}/logs"
RETRY = RetryPolicy(attempts=3, initial_backoff=0.1, max_wait=10)


LAST_RUN_ISO = "2024-05-01T12:00:00.000Z"
LAST_RUN_UNIX = 1714564800.0

DOCS_BODY: dict[str, Any] = {
    "success": True,
    "data": {
        "executions": [{"executedAt": "2024-05-01T11:59:00.000Z"}],
        "stats": {
            "totalExecutions": 200,
            "successful": 190,
            "failed": 10,
            "successRate": 95.0,
            "avgExecutionTime": 1250,
            "lastRun": LAST_RUN_ISO,
        },
    },
}
DOCS_STATS = FunctionStats(
    total_executions=200,
    successful_executions=190,
    failed_executions=10,
    success_ratio=0.95,
    avg_execution_seconds=1.25,
    last_run_timestamp=LAST_RUN_UNIX,
)

OPENAPI_BODY: dict[str, Any] = {
    "success": True,
    "data": {
        "executions": [],
        "stats": {
            "totalExecutions": 40,
            "successfulExecutions": 30,
            "failedExecutions": 10,
            "avgExecutionTime": 80,
            "lastExecution": LAST_RUN_ISO,
        },
    },
}
OPENAPI_STATS = FunctionStats(
    total_executions=40,
    successful_executions=30,
    failed_executions=10,
    success_ratio=0.75,
    avg_execution_seconds=0.08,
    last_run_timestamp=LAST_RUN_UNIX,
)


class FakeSleep:
    """Records each requested delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Recorder:
    """The on_request observer: every (endpoint, code) pair the client reported."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, endpoint: str, code: str) -> None:
        self.calls.append((endpoint, code))


@dataclass
class Harness:
    client: MudbaseClient
    sleep: FakeSleep
    seen: Recorder


def make(
    http: httpx.AsyncClient, auth: Credential | None = None, retry: RetryPolicy = RETRY
) -> Harness:
    sleep, seen = FakeSleep(), Recorder()
    client = MudbaseClient(
        BASE,
        auth or StaticToken(SecretStr(TOKEN)),
        http,
        retry=retry,
        timeout=5,
        on_request=seen,
        sleep=sleep,
    )
    return Harness(client, sleep, seen)


async def stats_of(client: MudbaseClient, project: str, function: str) -> FunctionStats:
    """A function's stats from its logs endpoint, as a poll asks for them."""
    return (await client.function_logs(project, function)).stats


async def poll_error(harness: Harness) -> PollError:
    with pytest.raises(PollError) as info:
        await stats_of(harness.client, PROJECT, FUNCTION)
    return info.value


def bearer(request: httpx.Request) -> str:
    return str(request.headers.get("Authorization", ""))


# --- success ---------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "expected"), [(DOCS_BODY, DOCS_STATS), (OPENAPI_BODY, OPENAPI_STATS)]
)
async def test_200_in_either_dialect_gives_stats(
    body: dict[str, Any], expected: FunctionStats
) -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).respond(200, json=body)
            h = make(http)
            stats = await stats_of(h.client, PROJECT, FUNCTION)
    assert stats == expected
    assert route.call_count == 1
    request = route.calls.last.request
    assert bearer(request) == f"Bearer {TOKEN}"
    assert request.url.params["limit"] == "1"
    assert h.sleep.delays == []
    assert h.seen.calls == [("logs", "200")]


@pytest.mark.asyncio
async def test_ids_are_url_encoded_in_the_path() -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(url__startswith=BASE).respond(200, json=DOCS_BODY)
            h = make(http)
            await stats_of(h.client, "team a/b", "fn?x#1")
    assert route.call_count == 1
    assert route.calls.last.request.url.raw_path == (
        b"/api/functions/projects/team%20a%2Fb/functions/fn%3Fx%231/logs?limit=1"
    )


# --- retries on 5xx and 429 --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_503_then_200_is_retried_once() -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).mock(
                side_effect=[httpx.Response(503), httpx.Response(200, json=DOCS_BODY)]
            )
            h = make(http)
            stats = await stats_of(h.client, PROJECT, FUNCTION)
    assert stats == DOCS_STATS
    assert route.call_count == 2
    assert len(h.sleep.delays) == 1
    assert 0 < h.sleep.delays[0] <= RETRY.max_wait
    assert h.seen.calls == [("logs", "503"), ("logs", "200")]


async def _sleep_after_429(headers: dict[str, str], body: dict[str, Any] | None) -> list[float]:
    """The delays slept for one 429 (with these headers and JSON body) followed by a 200."""
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).mock(
                side_effect=[
                    httpx.Response(429, headers=headers, json=body),
                    httpx.Response(200, json=DOCS_BODY),
                ]
            )
            h = make(http)
            assert await stats_of(h.client, PROJECT, FUNCTION) == DOCS_STATS
    assert route.call_count == 2
    assert h.seen.calls == [("logs", "429"), ("logs", "200")]
    return h.sleep.delays


@pytest.mark.asyncio
async def test_429_retry_after_seconds_is_honoured() -> None:
    assert await _sleep_after_429({"Retry-After": "7"}, None) == [7.0]


@pytest.mark.asyncio
async def test_429_retry_after_longer_than_max_wait_fails_without_an_early_retry() -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).respond(429, headers={"Retry-After": "3600"})
            h = make(http)
            err = await poll_error(h)
    assert err.reason is Reason.RATE_LIMITED
    assert err.retry_after == 3600
    assert route.call_count == 1  # never retried before Mudbase allows it
    assert h.sleep.delays == []


@pytest.mark.asyncio
async def test_429_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=8)
    header = email.utils.format_datetime(when, usegmt=True)
    [delay] = await _sleep_after_429({"Retry-After": header}, None)
    # an HTTP date has whole seconds: 8s ahead, truncated, minus the test's own run time
    assert 6 < delay <= 8


@pytest.mark.asyncio
async def test_429_retry_after_from_json_body() -> None:
    assert await _sleep_after_429({}, {"retryAfter": 3}) == [3.0]


@pytest.mark.asyncio
async def test_429_without_hint_uses_exponential_backoff_then_gives_up() -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).respond(429, json={"error": "slow down"})
            h = make(http)
            err = await poll_error(h)
    assert err.reason is Reason.RATE_LIMITED
    assert err.status == 429
    assert err.retry_after is None
    assert route.call_count == RETRY.attempts
    assert len(h.sleep.delays) == RETRY.attempts - 1
    assert all(0 < d <= RETRY.max_wait for d in h.sleep.delays)
    # exponential: the second wait is at least the first (initial 0.1 + jitter, then 0.2 + jitter)
    assert h.sleep.delays[1] >= h.sleep.delays[0]


@pytest.mark.asyncio
async def test_persistent_500_gives_up_after_attempts() -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).respond(500, json={"error": "boom"})
            h = make(http)
            err = await poll_error(h)
    assert err.reason is Reason.SERVER_ERROR
    assert err.status == 500
    assert "boom" in str(err)
    assert route.call_count == RETRY.attempts
    assert len(h.sleep.delays) == RETRY.attempts - 1
    assert h.seen.calls == [("logs", "500")] * RETRY.attempts


@pytest.mark.asyncio
async def test_no_retry_is_scheduled_past_the_polls_deadline() -> None:
    POLL_DEADLINE.set(asyncio.get_running_loop().time() + 4)  # the Retry-After would end later
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).respond(429, headers={"Retry-After": "5"})
            h = make(http)
            err = await poll_error(h)
    assert err.reason is Reason.RATE_LIMITED
    assert err.retry_after == 5.0
    assert route.call_count == 1
    assert h.sleep.delays == []


# --- 4xx are not retried -----------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "reason"),
    [(400, Reason.CLIENT_ERROR), (403, Reason.FORBIDDEN), (404, Reason.NOT_FOUND)],
)
async def test_4xx_is_not_retried(status: int, reason: Reason) -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).respond(status, json={"message": "nope"})
            h = make(http)
            err = await poll_error(h)
    assert err.reason is reason
    assert err.status == status
    assert not err.retryable
    assert route.call_count == 1
    assert h.sleep.delays == []
    assert h.seen.calls == [("logs", str(status))]


# --- 401 and token rotation --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_401_with_static_token_is_auth_after_one_call() -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).respond(401, json={"error": "unauthorized"})
            h = make(http)
            err = await poll_error(h)
    assert err.reason is Reason.AUTH
    assert err.status == 401
    assert route.call_count == 1
    assert h.sleep.delays == []


@pytest.mark.asyncio
async def test_401_with_rotated_token_file_retries_with_new_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n", encoding="utf-8")

    def rotate_then_check(request: httpx.Request) -> httpx.Response:
        if bearer(request) == f"Bearer {NEW_TOKEN}":
            return httpx.Response(200, json=DOCS_BODY)
        # a secret rotation: the file is replaced (new inode) while the old token is refused
        staged = tmp_path / "token.new"
        staged.write_text(f"{NEW_TOKEN}\n", encoding="utf-8")
        os.replace(staged, token_file)
        return httpx.Response(401, json={"error": "token expired"})

    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).mock(side_effect=rotate_then_check)
            h = make(http, auth=FileToken(token_file, SecretStr(TOKEN)))
            stats = await stats_of(h.client, PROJECT, FUNCTION)
    assert stats == DOCS_STATS
    assert route.call_count == 2
    assert [bearer(call.request) for call in route.calls] == [
        f"Bearer {TOKEN}",
        f"Bearer {NEW_TOKEN}",
    ]
    assert h.sleep.delays == []
    assert h.seen.calls == [("logs", "401"), ("logs", "200")]


@pytest.mark.asyncio
async def test_401_with_unchanged_token_file_is_auth(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n", encoding="utf-8")
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).respond(401, json={"error": "unauthorized"})
            h = make(http, auth=FileToken(token_file, SecretStr(TOKEN)))
            err = await poll_error(h)
    assert err.reason is Reason.AUTH
    assert route.call_count == 1
    assert bearer(route.calls.last.request) == f"Bearer {TOKEN}"
    assert h.sleep.delays == []


# --- transport errors --------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error", "reason", "code"),
    [
        (httpx.ConnectError, Reason.CONNECTION, "connection_error"),
        (httpx.ReadTimeout, Reason.TIMEOUT, "timeout"),
    ],
)
async def test_transport_errors_are_retried_then_typed(
    error: type[httpx.TransportError], reason: Reason, code: str
) -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).mock(side_effect=error)
            h = make(http)
            err = await poll_error(h)
    assert err.reason is reason
    assert err.status is None
    assert route.call_count == RETRY.attempts
    assert len(h.sleep.delays) == RETRY.attempts - 1
    assert h.seen.calls == [("logs", code)] * RETRY.attempts


@pytest.mark.asyncio
async def test_transport_error_then_200_recovers() -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).mock(
                side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=DOCS_BODY)]
            )
            h = make(http)
            stats = await stats_of(h.client, PROJECT, FUNCTION)
    assert stats == DOCS_STATS
    assert route.call_count == 2
    assert len(h.sleep.delays) == 1
    assert h.seen.calls == [("logs", "connection_error"), ("logs", "200")]


# --- bad bodies --------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        json.dumps({"success": True, "data": {"stats": {"totalExecutions": "many"}}}).encode(),
        json.dumps({"success": True, "data": {"stats": {"lastRun": "yesterday-ish"}}}).encode(),
        json.dumps({"success": True}).encode(),
    ],
    ids=["malformed-json", "count-is-a-string", "bad-date", "no-data"],
)
async def test_bad_200_body_is_bad_response_and_not_retried(content: bytes) -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).respond(
                200, content=content, headers={"Content-Type": "application/json"}
            )
            h = make(http)
            err = await poll_error(h)
    assert err.reason is Reason.BAD_RESPONSE
    assert err.status == 200
    assert route.call_count == 1
    assert h.sleep.delays == []


# --- no credential in errors -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_transport_error_text_is_not_copied_into_the_error() -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            router.get(LOGS_URL).mock(side_effect=httpx.ConnectError(f"refused Bearer {TOKEN}"))
            h = make(http)
            err = await poll_error(h)
    assert err.reason is Reason.CONNECTION
    assert TOKEN not in str(err)
    assert TOKEN not in repr(err)
    assert TOKEN not in repr(h.client)


# Mudbase's error text is quoted in PollError for diagnosis; a token it echoes is blanked out.
@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "field"), [(401, "error"), (403, "message")])
async def test_echoed_token_never_reaches_the_error_message(status: int, field: str) -> None:
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            router.get(LOGS_URL).respond(status, json={field: f"bad token {TOKEN}"})
            h = make(http)
            err = await poll_error(h)
    assert err.status == status
    assert TOKEN not in str(err)
    assert TOKEN not in repr(err)


def planned_client(http: httpx.AsyncClient, planner: RequestPlanner) -> MudbaseClient:
    """A client with no retries, sharing `planner`."""
    retry = RetryPolicy(attempts=1, initial_backoff=0.1, max_wait=10)
    return MudbaseClient(
        BASE, StaticToken(SecretStr(TOKEN)), http, retry=retry, timeout=5, planner=planner
    )


def roomy_planner() -> RequestPlanner:
    return RequestPlanner(100_000, 60, 8, ExporterMetrics(CollectorRegistry()))


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_429_pauses_requests_for_every_function() -> None:
    """Mudbase's limit is per client IP: after a 429, no function may send until Retry-After."""
    loop = asyncio.get_running_loop()
    sent: list[tuple[str, float]] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.path.split("/")[-2], loop.time()))
        if len(sent) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"})
        return httpx.Response(200, json=DOCS_BODY)

    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            router.get(url__regex=r".*/logs").mock(side_effect=record)
            client = planned_client(http, roomy_planner())
            with pytest.raises(PollError):
                await stats_of(client, PROJECT, "first")
            await stats_of(client, PROJECT, "second")
    (_, limited_at), (function, sent_at) = sent
    assert function == "second"
    assert sent_at - limited_at == 7


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_429_without_retry_after_pauses_everyone_longer_while_it_repeats() -> None:
    loop = asyncio.get_running_loop()
    sent: list[float] = []
    answers = [429, 429, 200, 429, 200]

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(loop.time())
        return httpx.Response(answers[len(sent) - 1], json={"error": "slow down", **DOCS_BODY})

    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            router.get(url__regex=r".*/logs").mock(side_effect=record)
            client = planned_client(http, roomy_planner())
            for function in ("first", "second", "third", "fourth", "fifth"):
                with contextlib.suppress(PollError):
                    await stats_of(client, PROJECT, function)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert gaps[:2] == [UNHINTED_PAUSE, 2 * UNHINTED_PAUSE]  # a second 429 in a row doubles
    # the third request was let go when the pause ended and answered (the fourth followed at
    # the budget's pace, 1/111 s): the backoff starts over
    assert gaps[2:] == [pytest.approx(1 / refill_rate(100_000, 60), abs=1e-5), UNHINTED_PAUSE]


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_retry_refused_by_a_pause_fails_with_the_functions_own_answer() -> None:
    """A 500; meanwhile another request's 429 pauses every request past this poll's deadline:
    the poll fails with its own 500 at once, not with the pause nor retried into it."""
    planner = roomy_planner()
    POLL_DEADLINE.set(asyncio.get_running_loop().time() + 48)

    def answer(request: httpx.Request) -> httpx.Response:
        planner.rate_limited(120.0)
        return httpx.Response(500, json={"error": "boom"})

    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).mock(side_effect=answer)
            sleep = FakeSleep()
            client = MudbaseClient(
                BASE,
                StaticToken(SecretStr(TOKEN)),
                http,
                retry=RETRY,
                timeout=5,
                sleep=sleep,
                planner=planner,
            )
            with pytest.raises(PollError) as failed:
                await stats_of(client, PROJECT, FUNCTION)
    assert (failed.value.reason, failed.value.status) == (Reason.SERVER_ERROR, 500)
    assert route.call_count == 1
    assert len(sleep.delays) <= 1  # at most the backoff before the retry the pause refused


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_retry_that_finds_no_turn_in_time_fails_with_the_functions_own_answer() -> None:
    """A 503 at a full budget: the retry waits for its turn only until the last moment a
    retry may start (a tenth of the interval before the poll's deadline), then the poll fails
    with Mudbase's own answer, not as a timeout."""
    loop = asyncio.get_running_loop()
    planner = RequestPlanner(92, 60, 8, ExporterMetrics(CollectorRegistry()))  # 0.1 a second
    async with planner.turn(RequestKind.POLL), planner.turn(RequestKind.POLL):
        pass  # the bucket of two is empty: the next tokens come at 10 s and 20 s
    POLL_DEADLINE.set(loop.time() + 21)  # no retry waits for its turn past 15 s
    async with httpx.AsyncClient() as http:
        with respx.mock() as router:
            route = router.get(LOGS_URL).respond(503, json={"error": "down"})
            client = MudbaseClient(
                BASE, StaticToken(SecretStr(TOKEN)), http, retry=RETRY, timeout=5, planner=planner
            )
            with pytest.raises(PollError) as failed:
                await stats_of(client, PROJECT, FUNCTION)  # its first try takes the 10 s token
    assert (failed.value.reason, failed.value.status) == (Reason.SERVER_ERROR, 503)
    assert route.call_count == 1
    assert loop.time() == pytest.approx(15)  # the retry gave up waiting for the 20 s token
