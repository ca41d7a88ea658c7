"""Login mode's Session, against respx: one renewal in flight, rotation, fallback, budgets."""

import asyncio
import json

import httpx
import pytest
import respx
from prometheus_client import CollectorRegistry, Counter
from pydantic import SecretStr

from exporter.errors import PollError, Reason
from exporter.session import LOGIN_BACKOFF, LOGINS_PER_WINDOW, Session
from exporter.supervision import LoopErrors

BASE = "https://mudbase.test"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def issued(n: int, ttl: float = 100) -> httpx.Response:
    body = {"token": f"tok-{n}", "refreshToken": f"rt-{n}", "expiresIn": ttl}
    return httpx.Response(200, json={"success": True, "data": body})


def session(http: httpx.AsyncClient, clock: Clock) -> Session:
    return Session(BASE, "a@b.c", SecretStr("pw-secret"), http, timeout=5, clock=clock)


@pytest.mark.asyncio
async def test_many_concurrent_polls_share_one_login_and_one_refresh() -> None:
    clock = Clock()
    async with httpx.AsyncClient() as http, respx.mock() as router:
        login = router.post(f"{BASE}/api/auth/login").mock(return_value=issued(1))
        refresh = router.post(f"{BASE}/api/auth/refresh").mock(return_value=issued(2))
        auth = session(http, clock)
        first = await asyncio.gather(*(auth.headers() for _ in range(50)))
        assert {h["Authorization"] for h in first} == {"Bearer tok-1"}
        assert login.call_count == 1
        assert json.loads(login.calls[0].request.content) == {
            "email": "a@b.c",
            "password": "pw-secret",
        }
        clock.now += 71  # 29 s of the 100 s left: inside the 30 s refresh margin
        second = await asyncio.gather(*(auth.headers() for _ in range(50)))
        assert {h["Authorization"] for h in second} == {"Bearer tok-2"}
        assert refresh.call_count == 1
        assert json.loads(refresh.calls[0].request.content) == {"refreshToken": "rt-1"}
        assert auth.expiry() == clock.now + 100


@pytest.mark.asyncio
async def test_the_newest_refresh_token_is_always_used() -> None:
    clock = Clock()
    async with httpx.AsyncClient() as http, respx.mock() as router:
        router.post(f"{BASE}/api/auth/login").mock(return_value=issued(1))
        refresh = router.post(f"{BASE}/api/auth/refresh").mock(
            side_effect=[issued(2), issued(3), issued(4)]
        )
        auth = session(http, clock)
        await auth.headers()
        for _ in range(3):
            clock.now += 80
            await auth.headers()
        sent = [json.loads(c.request.content)["refreshToken"] for c in refresh.calls]
        assert sent == ["rt-1", "rt-2", "rt-3"]


@pytest.mark.asyncio
async def test_refused_refresh_falls_back_to_login() -> None:
    clock = Clock()
    async with httpx.AsyncClient() as http, respx.mock() as router:
        login = router.post(f"{BASE}/api/auth/login").mock(side_effect=[issued(1), issued(5)])
        router.post(f"{BASE}/api/auth/refresh").mock(return_value=httpx.Response(401, json={}))
        auth = session(http, clock)
        await auth.headers()
        clock.now += 80
        assert await auth.headers() == {"Authorization": "Bearer tok-5"}
        assert login.call_count == 2


@pytest.mark.asyncio
async def test_unauthorized_renews_once_and_later_waiters_reuse_the_new_token() -> None:
    clock = Clock()
    async with httpx.AsyncClient() as http, respx.mock() as router:
        router.post(f"{BASE}/api/auth/login").mock(return_value=issued(1))
        refresh = router.post(f"{BASE}/api/auth/refresh").mock(return_value=issued(2))
        auth = session(http, clock)
        rejected = await auth.headers()
        results = await asyncio.gather(
            *(auth.renew_after_unauthorized(rejected) for _ in range(20))
        )
        assert all(results)
        assert refresh.call_count == 1
        assert await auth.headers() == {"Authorization": "Bearer tok-2"}


@pytest.mark.asyncio
async def test_failed_login_is_not_retried_by_every_poll() -> None:
    clock = Clock()
    async with httpx.AsyncClient() as http, respx.mock() as router:
        login = router.post(f"{BASE}/api/auth/login").mock(
            return_value=httpx.Response(401, json={"error": "bad password pw-secret"})
        )
        auth = session(http, clock)
        errors = await asyncio.gather(*(auth.headers() for _ in range(30)), return_exceptions=True)
        assert all(isinstance(e, PollError) and e.reason is Reason.AUTH for e in errors)
        assert login.call_count == 1
        assert all("pw-secret" not in str(e) for e in errors)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_login_budget_is_never_exceeded() -> None:
    loop = asyncio.get_running_loop()
    logins: list[float] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        logins.append(loop.time())
        return httpx.Response(503, json={})

    async with httpx.AsyncClient() as http, respx.mock() as router:
        router.post(f"{BASE}/api/auth/login").mock(side_effect=refuse)
        auth = session(http, Clock())
        for _ in range(100):  # a poll every 61 s, past each failed login's 60 s backoff
            await asyncio.sleep(61)
            with pytest.raises(PollError):
                await auth.headers()
    assert len(logins) > LOGINS_PER_WINDOW  # the limiter, not the backoff, held them back
    for first in logins:
        in_window = [t for t in logins if first <= t < first + 15 * 60]
        assert len(in_window) <= LOGINS_PER_WINDOW


@pytest.mark.asyncio
async def test_a_poll_cancelled_during_a_refresh_does_not_lose_the_rotated_token() -> None:
    clock = Clock()
    gate = asyncio.Event()

    async def slow_refresh(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return issued(2)

    async with httpx.AsyncClient() as http, respx.mock() as router:
        router.post(f"{BASE}/api/auth/login").mock(return_value=issued(1))
        refresh = router.post(f"{BASE}/api/auth/refresh").mock(side_effect=slow_refresh)
        auth = session(http, clock)
        await auth.headers()
        clock.now += 80
        poll = asyncio.create_task(auth.headers())
        await asyncio.sleep(0.01)
        poll.cancel()  # the poll's deadline, a reload: the refresh itself goes on
        gate.set()
        await asyncio.sleep(0.01)
        assert await auth.headers() == {"Authorization": "Bearer tok-2"}
        clock.now += 80
        await auth.headers()  # the next refresh sends the rotated refresh token
        sent = [json.loads(c.request.content)["refreshToken"] for c in refresh.calls]
        assert sent == ["rt-1", "rt-2"]


@pytest.mark.asyncio
async def test_a_failed_refresh_keeps_using_the_still_valid_token() -> None:
    clock = Clock()
    async with httpx.AsyncClient() as http, respx.mock() as router:
        router.post(f"{BASE}/api/auth/login").mock(return_value=issued(1))
        router.post(f"{BASE}/api/auth/refresh").mock(return_value=httpx.Response(503))
        auth = session(http, clock)
        await auth.headers()
        clock.now += 80  # 20 s left: due for a refresh, which fails
        assert await auth.headers() == {"Authorization": "Bearer tok-1"}
        clock.now += 25  # expired now: the failure reaches the poll
        with pytest.raises(PollError):
            await auth.headers()


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_refresh_without_answer_is_followed_by_a_login_not_a_reused_token() -> None:
    clock = Clock()
    async with httpx.AsyncClient() as http, respx.mock() as router:
        login = router.post(f"{BASE}/api/auth/login").mock(side_effect=[issued(1), issued(7)])
        refresh = router.post(f"{BASE}/api/auth/refresh").mock(
            side_effect=httpx.ConnectError("reset")
        )
        auth = session(http, clock)
        await auth.headers()
        clock.now += 80
        await auth.headers()  # the refresh got no answer: still tok-1 (valid for 20 s)
        clock.now += 30  # past RENEW_BACKOFF and past expiry
        await asyncio.sleep(30)
        assert await auth.headers() == {"Authorization": "Bearer tok-7"}
        assert refresh.call_count == 1
        assert login.call_count == 2


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_token_is_renewed_on_a_timer_while_no_poll_asks_for_it() -> None:
    loop = asyncio.get_running_loop()
    errors = LoopErrors(Counter("errors", "", ["loop"], registry=CollectorRegistry()))
    async with httpx.AsyncClient() as http, respx.mock() as router:
        router.post(f"{BASE}/api/auth/login").mock(return_value=issued(1))
        refresh = router.post(f"{BASE}/api/auth/refresh").mock(
            side_effect=[issued(n) for n in range(2, 10)]
        )
        auth = Session(BASE, "a@b.c", SecretStr("pw"), http, timeout=5, clock=loop.time)
        renewal = asyncio.create_task(auth.keep_fresh(errors))
        lapsed = []
        for _ in range(340):  # 340 s of fake time, tokens of 100 s, no poll at all
            await asyncio.sleep(1)
            expiry = auth.expiry()
            lapsed.append(expiry is None or expiry <= loop.time())
        renewal.cancel()
    assert not any(lapsed[1:])  # valid from the first login on, every second
    assert refresh.call_count == 4  # every 70 s: at 30 s before each expiry


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_bug_in_the_renewal_timer_is_counted_and_renewal_goes_on() -> None:
    loop = asyncio.get_running_loop()
    counter = Counter("errors", "", ["loop"], registry=CollectorRegistry())
    async with httpx.AsyncClient() as http, respx.mock() as router:
        router.post(f"{BASE}/api/auth/login").mock(return_value=issued(1))
        refresh = router.post(f"{BASE}/api/auth/refresh").mock(
            side_effect=[RuntimeError("a bug"), issued(2), issued(3)]
        )
        auth = Session(BASE, "a@b.c", SecretStr("pw"), http, timeout=5, clock=loop.time)
        renewal = asyncio.create_task(auth.keep_fresh(LoopErrors(counter)))
        await asyncio.sleep(80)  # logged in at 0 s, the refresh due at 70 s hits the bug
        renewal.cancel()
    assert counter.labels("auth")._value.get() == 1
    assert refresh.call_count == 2  # tried again 5 s later, and renewed
    assert auth.expiry() == pytest.approx(75 + 100)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_login_backoff_runs_on_the_event_loops_monotonic_clock() -> None:
    """The wall clock stands still here, as it would for as long as a step backwards: a
    failed login is tried again once LOGIN_BACKOFF has passed on the event loop's clock."""
    async with httpx.AsyncClient() as http, respx.mock() as router:
        login = router.post(f"{BASE}/api/auth/login").mock(
            side_effect=[httpx.Response(503, json={}), issued(1)]
        )
        auth = session(http, Clock())
        with pytest.raises(PollError):
            await auth.headers()
        await asyncio.sleep(LOGIN_BACKOFF + 1)
        assert await auth.headers() == {"Authorization": "Bearer tok-1"}
        assert login.call_count == 2
