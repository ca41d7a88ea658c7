"""Supervised loops: the renderer survives its bugs, and /-/healthy says when it cannot."""

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from exporter import exposition as exposition_module
from exporter.exposition import CachedExposition
from exporter.selfmetrics import ExporterMetrics
from exporter.supervision import Health
from exporter.targets import TargetKey
from exporter.upstream import FunctionStats
from exporter.web import ExporterHTTPServer, start_http_server
from tests.helpers import FakeTime, http_get, serving_exporter


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class FlakyRenderer:
    """The per-function part: fails while `failing` is set."""

    def __init__(self) -> None:
        self.failing = threading.Event()
        self.generation = 0
        self.renders = 0

    def parts(self) -> list[list[bytes]]:  # one chunk of one piece
        if self.failing.is_set():
            raise RuntimeError("a bug in rendering")
        self.renders += 1
        return [[f'mudbase_function_up{{function="f"}} {self.generation}\n'.encode()]]


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=5) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


def test_a_failing_render_is_counted_health_says_so_and_the_next_render_recovers() -> None:
    renderer = FlakyRenderer()
    errors: list[Exception] = []
    exposition = CachedExposition(
        renderer.parts, lambda: renderer.generation, CollectorRegistry(), 0.01, errors.append
    )
    health = Health(exposition.unrendered_for, render_stale_limit=0.2)
    server = ExporterHTTPServer(
        ("127.0.0.1", 0),
        exposition,
        landing_page=lambda query: b"",
        ready=lambda: True,
        reload=lambda: None,
        health_problems=health.problems,
    )
    start_http_server(server)
    exposition.start()
    try:
        exposition.notify()
        wait_until(lambda: exposition.rendered_generation() == 0, "the first render")
        assert healthz(server.server_address[1]) == (200, "Healthy\n")

        renderer.failing.set()
        renderer.generation = 1
        exposition.notify()
        wait_until(lambda: len(errors) >= 2, "the renderer to fail and try again")
        wait_until(lambda: healthz(server.server_address[1])[0] == 503, "unhealthy")
        assert "/metrics has not shown the state's changes" in healthz(server.server_address[1])[1]
        assert exposition.body().startswith(b'mudbase_function_up{function="f"} 0')  # the last

        renderer.failing.clear()  # the bug goes away: the loop, still running, renders again
        wait_until(lambda: exposition.rendered_generation() == 1, "a render after the errors")
        assert healthz(server.server_address[1]) == (200, "Healthy\n")
        assert exposition.last_render_time is not None
        assert exposition.last_render_time > time.time() - 60
    finally:
        exposition.stop()
        server.shutdown()
        server.server_close()


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_an_event_loop_that_stops_ticking_is_unhealthy() -> None:
    loop = asyncio.get_running_loop()
    metrics = ExporterMetrics(CollectorRegistry())
    health = Health(lambda: 0.0, clock=loop.time, loop_stall_limit=30)
    assert health.problems() == []  # not started yet: nothing to judge
    beat = asyncio.create_task(health.beat(metrics.loop_errors))
    await asyncio.sleep(100)
    assert health.problems() == []
    beat.cancel()  # as if the loop were blocked: no tick any more
    await asyncio.sleep(31)
    # the last tick was at 99 s (the one due at 100 s never came)
    assert health.problems() == ["the event loop has not ticked for 32 s"]


def test_an_idle_exporter_stays_healthy_after_a_readiness_probe_and_a_real_lag_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first /-/ready that finds every function polled once made /-/healthy fail 60 s
    later, however idle the exporter (a liveness probe then restarts it): only a change of
    the state that /metrics does not show may make it unhealthy."""
    clock = FakeTime()
    monkeypatch.setattr(exposition_module, "time", clock)
    with serving_exporter("[{project: p, functions: [f]}]") as exporter:
        url = f"http://127.0.0.1:{exporter.port}"
        key = TargetKey("p", "f")
        exporter.state.set_targets([key])
        exporter.state.record_success(key, FunctionStats(total_executions=1), now=1.0)
        exporter.exposition.body()  # the renderer shows the change
        assert http_get(f"{url}/-/ready") == (200, b"Ready\n")
        for _ in range(5):  # five idle minutes: nothing changes, nothing to show
            clock.now += 60
            assert http_get(f"{url}/-/healthy") == (200, b"Healthy\n")

        exporter.state.record_success(key, FunctionStats(total_executions=2), now=2.0)
        clock.now += 61  # a real change that /metrics has not shown for 61 s
        status, body = http_get(f"{url}/-/healthy")
        assert (status, body.decode()) == (
            503,
            "Unhealthy: /metrics has not shown the state's changes for 61 s\n",
        )
        exporter.exposition.body()
        assert http_get(f"{url}/-/healthy") == (200, b"Healthy\n")
