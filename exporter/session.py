"""Login mode: POST /api/auth/login, refresh before expiry, never more than the auth budget.

Mudbase's JWTs expire (30 minutes by default) and refresh tokens rotate: reusing an old refresh
token revokes the session. So:
- one lock: exactly one login or refresh is in flight, and every poll waiting on it gets its
  result; the newest refresh token is always the one kept;
- the token is refreshed when less than a fifth of its lifetime is left (at least 30 s, at most
  half the lifetime);
- a refused refresh (401/403) falls back to a new login;
- logins and refreshes each go through an aiolimiter leaky bucket sized to half of Mudbase's
  per-15-minute limits (20 and 60), so that, burst and drip together, no 15-minute window ever
  holds more than the limit, even when every target fails at once; a poll that would exceed
  the budget fails as `auth` without calling Mudbase;
- after a failed login, no new login for `LOGIN_BACKOFF` seconds, and a failed renewal is
  answered again to every poll for `RENEW_BACKOFF` seconds (durations on the event loop's
  monotonic clock: a step of the wall clock neither shortens nor stalls them);
- every login and refresh also takes its turn from the request planner, like every other
  request to Mudbase, so the request budget counts them;
- the token is renewed on a timer (`keep_fresh`), not only when a poll asks for it: with polls
  further apart than the refresh margin it would otherwise lapse between them.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import httpx
from aiolimiter import AsyncLimiter
from pydantic import SecretStr

from exporter.auth import jwt_expiry
from exporter.client import RequestObserver, error_for_response
from exporter.errors import PollError, Reason
from exporter.logs import REDACTOR, get_logger
from exporter.planner import RequestKind, RequestPlanner
from exporter.supervision import Loop, LoopErrors

log = get_logger("exporter.session")

AUTH_WINDOW = 15 * 60
LOGINS_PER_WINDOW = 20  # Mudbase's /api/auth/* limit per client IP
REFRESHES_PER_WINDOW = 60  # Mudbase's token refresh limit per client IP
LOGIN_BACKOFF = 60.0
MIN_REFRESH_MARGIN = 30.0
RENEW_BACKOFF = 5.0


class Session:
    """Bearer tokens from an email and password, kept fresh."""

    def __init__(
        self,
        base_url: str,
        email: str,
        password: SecretStr | Callable[[], SecretStr],
        http: httpx.AsyncClient,
        *,
        timeout: float,
        on_request: RequestObserver | None = None,
        share: float = 1.0,
        clock: Callable[[], float] = time.time,
        planner: RequestPlanner | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._email = email
        self._password = password
        self._http = http
        self._timeout = timeout
        self._on_request = on_request or (lambda endpoint, code: None)
        self._clock = clock  # Unix time: the token's expiry
        self._planner = planner
        self._renewal: asyncio.Task[None] | None = None
        # half the limit per window: a full bucket plus its drip stays within the limit; and
        # replicas behind one IP (shards) share the limit
        self._logins = AsyncLimiter(max(1.0, LOGINS_PER_WINDOW / 2 * share), AUTH_WINDOW)
        self._refreshes = AsyncLimiter(max(1.0, REFRESHES_PER_WINDOW / 2 * share), AUTH_WINDOW)
        self._token: str | None = None
        self._refresh_token: str | None = None
        self._expires_at = 0.0
        self._lifetime = 0.0
        self._login_blocked_until = 0.0
        self._failure: tuple[float, PollError] | None = None

    def __repr__(self) -> str:
        return f"Session(email={self._email!r})"

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self._valid_token()}"}

    async def renew_after_unauthorized(self, rejected: Mapping[str, str]) -> bool:
        if self._token is not None and rejected.get("Authorization") != f"Bearer {self._token}":
            return True  # another poll renewed the token meanwhile: try the new one
        if self._renewal is None or self._renewal.done():
            self._expires_at = 0.0  # the token was refused: renew it now
        try:
            await self._renewed()
        except PollError:
            return False
        return True

    def _current_password(self) -> str:
        password = self._password if isinstance(self._password, SecretStr) else self._password()
        return password.get_secret_value()

    def expiry(self) -> float | None:
        return self._expires_at if self._token is not None else None

    async def _valid_token(self) -> str:
        if self._token is not None and not self._due():
            return self._token
        try:
            await self._renewed()
        except PollError as err:
            if self._token is not None and self._clock() < self._expires_at:
                log.warning(
                    "token renewal failed; the current token is still valid",
                    reason=err.reason.value,
                    detail=err.detail,
                )
                return self._token
            raise
        assert self._token is not None
        return self._token

    async def _renewed(self) -> None:
        """Join the one renewal in flight, or start it. It runs as its own task, shielded: a
        poll cancelled meanwhile (its deadline, a reload) never cancels it half-way, so a
        refresh token Mudbase has rotated is always stored."""
        if self._renewal is None or self._renewal.done():
            self._renewal = asyncio.create_task(self._renew(), name="token renewal")
            self._renewal.add_done_callback(_consume_exception)
        await asyncio.shield(self._renewal)

    def _due(self) -> bool:
        return self._until_due() <= 0

    def _until_due(self) -> float:
        """Seconds until the token should be renewed (0: now, or no token yet)."""
        if self._token is None:
            return 0.0
        margin = min(max(MIN_REFRESH_MARGIN, self._lifetime / 5), self._lifetime / 2)
        return max(0.0, self._expires_at - margin - self._clock())

    async def keep_fresh(self, errors: LoopErrors) -> None:
        """Renew the token when it is due, forever (run as a task for the session's life): a
        token is valid whenever a poll needs one, however far apart the polls are. A failed
        renewal is tried again after `RENEW_BACKOFF` seconds (logins keep their own backoff
        and budget), and a poll that finds no valid token fails as `auth`."""
        failing = False
        while True:
            wait = self._until_due()
            if wait > 0:  # asked again after the sleep: a poll may have renewed it meanwhile
                await asyncio.sleep(wait)
                continue
            try:
                await self._renewed()
            except PollError as err:
                level = log.debug if failing else log.warning
                level("token renewal failed", reason=err.reason.value, detail=err.detail)
                failing = True
                await asyncio.sleep(RENEW_BACKOFF)
            except Exception as err:  # a bug: reported, renewal goes on
                errors.caught(Loop.AUTH, err)
                await asyncio.sleep(RENEW_BACKOFF)
            else:
                failing = False

    async def _renew(self) -> None:
        """Refresh if there is a refresh token, else (or if refused) log in. One at a time.

        A failure is remembered for RENEW_BACKOFF seconds and raised again to every poll that
        asks meanwhile, so that a thousand failing polls cost one call to the auth endpoints.
        """
        if self._failure is not None and _now() < self._failure[0]:
            raise self._failure[1]
        try:
            await self._refresh_or_login()
        except PollError as err:
            self._failure = (_now() + RENEW_BACKOFF, err)
            raise
        self._failure = None

    async def _refresh_or_login(self) -> None:
        if self._refresh_token is not None:
            try:
                await self._refresh()
            except PollError as err:
                if err.reason in (Reason.TIMEOUT, Reason.CONNECTION):
                    # no answer: Mudbase may have rotated the refresh token all the same, and
                    # reusing the old one would revoke the session: log in next time instead
                    self._refresh_token = None
                if err.reason not in (Reason.AUTH, Reason.FORBIDDEN, Reason.CLIENT_ERROR):
                    raise
                log.info("token refresh refused; logging in again", reason=err.reason.value)
                self._refresh_token = None
            else:
                return
        await self._login()

    async def _login(self) -> None:
        if _now() < self._login_blocked_until:
            raise PollError(Reason.AUTH, "login failed recently; waiting before the next try")
        if not self._logins.has_capacity():
            raise PollError(Reason.AUTH, "login budget used up (Mudbase allows 20 per 15 min)")
        await self._logins.acquire()
        body = {"email": self._email, "password": self._current_password()}
        try:
            answer = await self._post("/api/auth/login", "login", body)
        except PollError:
            self._login_blocked_until = _now() + LOGIN_BACKOFF
            raise
        self._accept(answer)
        log.info("logged in", email=self._email, expires_in=round(self._lifetime))

    async def _refresh(self) -> None:
        if not self._refreshes.has_capacity():
            raise PollError(Reason.RATE_LIMITED, "refresh budget used up (60 per 15 min)")
        await self._refreshes.acquire()
        answer = await self._post(
            "/api/auth/refresh", "refresh", {"refreshToken": self._refresh_token}
        )
        self._accept(answer)
        log.debug("token refreshed", expires_in=round(self._lifetime))

    async def _post(
        self, path: str, endpoint: str, body: Mapping[str, object]
    ) -> dict[str, object]:
        try:
            async with self._turn(), asyncio.timeout(self._timeout):
                response = await self._http.post(f"{self._base_url}{path}", json=body)
        except httpx.ConnectTimeout:
            self._on_request(endpoint, "connection_error")
            raise PollError(Reason.CONNECTION, f"{endpoint}: could not connect") from None
        except (TimeoutError, httpx.TimeoutException):
            self._on_request(endpoint, "timeout")
            raise PollError(Reason.TIMEOUT, f"{endpoint}: no answer") from None
        except httpx.TransportError as err:
            self._on_request(endpoint, "connection_error")
            raise PollError(Reason.CONNECTION, f"{endpoint}: {type(err).__name__}") from None
        self._on_request(endpoint, str(response.status_code))
        secrets = [self._current_password(), self._refresh_token or ""]
        if response.status_code != 200:
            error = error_for_response(response, secrets)
            reason = Reason.AUTH if error.reason is Reason.FORBIDDEN else error.reason
            raise PollError(reason, f"{endpoint}: {error.detail}", error.status, error.retry_after)
        try:
            answer = json.loads(response.content)
        except ValueError:
            raise PollError(Reason.BAD_RESPONSE, f"{endpoint}: not JSON") from None
        data = answer.get("data", answer) if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise PollError(Reason.BAD_RESPONSE, f"{endpoint}: no token in the answer")
        return data

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """The planner's permission to send (none to ask without a planner)."""
        if self._planner is None:
            yield
            return
        async with self._planner.turn(RequestKind.AUTH):
            yield

    def _accept(self, answer: dict[str, object]) -> None:
        token = str(answer["token"])
        refresh = answer.get("refreshToken")
        expires_in = answer.get("expiresIn")
        now = self._clock()
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            self._lifetime = float(expires_in)
        else:
            self._lifetime = (jwt_expiry(token) or now + 1800) - now
        self._token = token
        self._expires_at = now + self._lifetime
        self._refresh_token = refresh if isinstance(refresh, str) and refresh else None
        REDACTOR.rotate("session", token, self._refresh_token or "")


def _now() -> float:
    """The event loop's monotonic clock, for durations."""
    return asyncio.get_running_loop().time()


def _consume_exception(task: asyncio.Task[None]) -> None:
    """Every poll waiting on a renewal may have been cancelled: never warn about its error."""
    if not task.cancelled():
        task.exception()
