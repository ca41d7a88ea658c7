"""The Mudbase API client: one shared httpx.AsyncClient, auth, retry, typed errors.

Retries (tenacity) cover connection errors, timeouts, 5xx and 429, with exponential backoff and
jitter, and honour Retry-After up to a cap. 400/401/403/404 are never retried. No retry is
scheduled to start, nor waits for its turn, later than a tenth of the interval before the
deadline of the poll it belongs to (`POLL_DEADLINE`). Every request, retries
included, asks the planner for its turn and tells it whether it is a re-send. A retry that the
planner refuses because a 429 pause outlasts the call ends it with the failure Mudbase
answered before, its own.
"""

import asyncio
import email.utils
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from exporter.auth import Credential
from exporter.errors import PollError, Reason
from exporter.logs import get_logger
from exporter.planner import (
    POLL_DEADLINE,
    NoTurnInTime,
    RefusedByPause,
    RequestKind,
    RequestPlanner,
)
from exporter.upstream import (
    LIST_PAGE_SIZE,
    FunctionPage,
    LogsPage,
    UpstreamFormatError,
    parse_function_list,
    parse_logs,
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial_backoff: float = 0.5
    max_wait: float = 30.0


RequestObserver = Callable[[str, str], None]
Fetch = Callable[[bool], Awaitable[bytes]]  # one try of a request; True: a re-send
Sleep = Callable[[float], Awaitable[None]]

log = get_logger("exporter.client")


class MudbaseClient:
    def __init__(
        self,
        base_url: str,
        auth: Credential,
        http: httpx.AsyncClient,
        *,
        retry: RetryPolicy,
        timeout: float,
        on_request: RequestObserver | None = None,
        sleep: Sleep = asyncio.sleep,
        planner: RequestPlanner | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._auth = auth
        self._http = http
        self._retry = retry
        self._timeout = timeout
        self._on_request = on_request or (lambda endpoint, code: None)
        self._sleep = sleep
        self._planner = planner
        self._backoff = wait_exponential_jitter(
            multiplier=retry.initial_backoff, max=retry.max_wait, jitter=retry.initial_backoff
        )

    def __repr__(self) -> str:
        return f"MudbaseClient(base_url={self._base_url!r})"

    def logs_url(self, project: str, function: str) -> str:
        return (
            f"{self._base_url}/api/functions/projects/{quote(project, safe='')}"
            f"/functions/{quote(function, safe='')}/logs"
        )

    async def function_logs(
        self,
        project: str,
        function: str,
        *,
        limit: int = 1,
        offset: int = 0,
        kind: RequestKind = RequestKind.POLL,
    ) -> LogsPage:
        """One page of the function's executions (newest first) and its stats, retried.
        `kind` tells the planner whether the request is required (poll) or optional (logs)."""
        url = self.logs_url(project, function)
        params = {"limit": str(limit)} | ({"offset": str(offset)} if offset else {})
        body = await self._with_retry(partial(self._get, url, "logs", params, kind))
        try:
            return parse_logs(body)
        except UpstreamFormatError as err:
            raise PollError(Reason.BAD_RESPONSE, str(err), status=200) from None

    async def function_page(self, project: str, page: int) -> FunctionPage:
        """One page (100 functions) of the project's function list, with inline stats."""
        url = f"{self._base_url}/api/functions/projects/{quote(project, safe='')}/functions"
        params = {"page": str(page), "limit": str(LIST_PAGE_SIZE)}
        body = await self._with_retry(partial(self._get, url, "list", params, RequestKind.LIST))
        try:
            return parse_function_list(body)
        except UpstreamFormatError as err:
            raise PollError(Reason.BAD_RESPONSE, str(err), status=200) from None

    async def _with_retry(self, call: Fetch) -> bytes:
        """The first try runs bare (almost every call succeeds at once: tenacity's machinery
        costs a fifth of a poll's CPU); a retryable failure enters tenacity, which replays it
        as its first attempt, so waits, stops and logging are exactly tenacity's."""
        try:
            return await call(False)
        except PollError as error:
            if not error.retryable:
                raise
            first_failure: list[PollError] = [error]
            answered = error  # the latest failure Mudbase answered (or the network caused)

        async def attempt() -> bytes:
            nonlocal answered
            if first_failure:
                raise first_failure.pop()
            try:
                return await call(True)
            except PollError as error:
                if not isinstance(error, RefusedByPause | NoTurnInTime):
                    answered = error
                raise

        try:
            return await self._retry_loop(attempt)
        except (RefusedByPause, NoTurnInTime):  # a retry the shared pause refused, or that
            # found no turn in time: the poll failed by its own answer
            raise answered from None

    async def _retry_loop(self, call: Callable[[], Awaitable[bytes]]) -> bytes:
        retrying = AsyncRetrying(
            stop=stop_any(
                stop_after_attempt(self._retry.attempts),
                _StopBeforeDeadline(self._last_try_by()),
                _StopIfWaitOver(self._retry.max_wait),
            ),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, PollError) and e.retryable),
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _last_try_by(self) -> float | None:
        """The loop time after which no retry starts: a tenth of the interval before the
        poll's deadline, so that it can still be answered (None: no deadline)."""
        deadline = POLL_DEADLINE.get()
        if deadline is None or self._planner is None:
            return deadline
        return deadline - self._planner.deadline_margin

    def _wait(self, state: RetryCallState) -> float:
        """Retry-After exactly when Mudbase sent one (never earlier), else backoff with jitter."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, PollError) and error.retry_after is not None:
            return error.retry_after
        return float(self._backoff(state))

    async def _get(
        self, url: str, endpoint: str, params: dict[str, str], kind: RequestKind, resend: bool
    ) -> bytes:
        headers = await self._auth.headers()
        response, sent_at = await self._send(url, endpoint, params, headers, kind, resend=resend)
        if response.status_code == 401 and await self._auth.renew_after_unauthorized(headers):
            headers = await self._auth.headers()
            response, sent_at = await self._send(url, endpoint, params, headers, kind, resend=True)
        if response.status_code != 200:
            error = error_for_response(response, secrets_in(headers))
            if error.status == 429 and self._planner is not None:
                self._planner.rate_limited(error.retry_after)
            raise error
        if self._planner is not None:
            self._planner.answered(sent_at)
        return response.content

    @asynccontextmanager
    async def _turn(self, kind: RequestKind, resend: bool) -> AsyncIterator[float]:
        """The planner's permission to send (or none without a planner); the send time."""
        if self._planner is None:
            yield asyncio.get_running_loop().time()
            return
        async with self._planner.turn(kind, resend=resend) as sent_at:
            yield sent_at

    async def _send(
        self,
        url: str,
        endpoint: str,
        params: dict[str, str],
        headers: dict[str, str],
        kind: RequestKind,
        *,
        resend: bool,
    ) -> tuple[httpx.Response, float]:
        async with self._turn(kind, resend) as sent_at:
            return await self._exchange(url, endpoint, params, headers), sent_at

    async def _exchange(
        self, url: str, endpoint: str, params: dict[str, str], headers: dict[str, str]
    ) -> httpx.Response:
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http.get(url, params=params, headers=headers)
        except httpx.ConnectTimeout:
            # no connection at all (refused, or not established in time): `connection`;
            # `timeout` is kept for an upstream that accepted the request and did not answer
            self._on_request(endpoint, "connection_error")
            raise PollError(Reason.CONNECTION, "could not connect") from None
        except (TimeoutError, httpx.TimeoutException):
            self._on_request(endpoint, "timeout")
            raise PollError(Reason.TIMEOUT, f"no answer within {self._timeout:g}s") from None
        except httpx.TransportError as err:
            self._on_request(endpoint, "connection_error")
            raise PollError(Reason.CONNECTION, type(err).__name__) from None
        self._on_request(endpoint, str(response.status_code))
        return response


def secrets_in(headers: dict[str, str]) -> list[str]:
    """The secret parts of auth headers, to blank out of quoted upstream text."""
    return [value.split(" ", 1)[-1] for value in headers.values()]


def error_for_response(response: httpx.Response, credentials: list[str]) -> PollError:
    """The typed error for a non-200 answer; Mudbase's message quoted, secrets blanked."""
    code = response.status_code
    detail = f"HTTP {code}{_error_message(response, credentials)}"
    if code == 401:
        return PollError(Reason.AUTH, detail, code)
    if code == 403:
        return PollError(Reason.FORBIDDEN, detail, code)
    if code == 404:
        return PollError(Reason.NOT_FOUND, detail, code)
    if code == 429:
        return PollError(Reason.RATE_LIMITED, detail, code, retry_after=_retry_after(response))
    if code >= 500:
        return PollError(Reason.SERVER_ERROR, detail, code)
    if 400 <= code < 500:
        return PollError(Reason.CLIENT_ERROR, detail, code)
    return PollError(Reason.BAD_RESPONSE, detail, code)


def _error_body(response: httpx.Response) -> dict[str, object]:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


_JWT_LIKE = re.compile(r"eyJ[\w-]+\.[\w-]+(?:\.[\w-]+)?")


def _error_message(response: httpx.Response, credentials: list[str]) -> str:
    """Mudbase's own error text, shortened, with anything credential-like blanked out."""
    body = _error_body(response)
    message = body.get("error") or body.get("message")
    if not isinstance(message, str) or not message:
        return ""
    for credential in credentials:
        if credential:
            message = message.replace(credential, "<redacted>")
    return f" ({_JWT_LIKE.sub('<redacted>', message)[:200]})"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from Retry-After (seconds or an HTTP date), else from the body's retryAfter."""
    header = response.headers.get("Retry-After")
    if header:
        header = header.strip()
        if header.isdigit():
            return float(header)
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    value = _error_body(response).get("retryAfter")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


class _StopBeforeDeadline(stop_base):
    """Stop rather than sleep past `deadline` (loop time; None: no deadline)."""

    def __init__(self, deadline: float | None) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self._deadline is None:
            return False
        now = asyncio.get_running_loop().time()
        return now + (retry_state.upcoming_sleep or 0.0) >= self._deadline


class _StopIfWaitOver(stop_base):
    """Stop rather than wait longer than max_wait: a long Retry-After fails the poll."""

    def __init__(self, max_wait: float) -> None:
        self._max_wait = max_wait

    def __call__(self, retry_state: RetryCallState) -> bool:
        return (retry_state.upcoming_sleep or 0.0) > self._max_wait


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, PollError):
        log.debug(
            "retrying",
            reason=error.reason.value,
            detail=error.detail,
            attempt=state.attempt_number,
            wait=round(state.upcoming_sleep, 3),
        )
