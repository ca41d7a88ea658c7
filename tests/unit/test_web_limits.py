"""What clients can hold of the HTTP server, and for how long: a cap on connections (more wait in
the listen backlog), and deadlines for headers, bodies, idle keep-alive and writing a response.
The limits are small here so that nothing waits long; no test asserts a duration."""

import http.client
import select
import threading
import time

import pytest

import exporter.web
from exporter.gzipstream import Chunk
from exporter.web import Limits
from tests.helpers import wait_for
from tests.rawhttp import TIMEOUT, Collaborators, RawClient, serving

SHORT = 0.3  # seconds: a deadline the tests' clients overrun on purpose
LONG = 60.0  # seconds: a deadline no test reaches
PACE = 0.02  # seconds between two bytes of a trickling client


def trickle(client: RawClient, data: bytes) -> bytes:
    """Send `data` a byte at a time, PACE apart, for as long as the server keeps the connection
    open; what the server sent before it closed (fails if it never does)."""
    rounds = int(TIMEOUT / PACE)
    for i in range(rounds):
        readable, _, _ = select.select([client.sock], [], [], PACE)
        if readable:
            return client.closed_by_server()
        try:
            client.send(data[i % len(data) : i % len(data) + 1])
        except (BrokenPipeError, ConnectionResetError):
            return b""
    raise AssertionError("the server never closed the trickling connection")


def test_a_client_trickling_its_headers_is_cut_at_the_header_deadline() -> None:
    limits = Limits(header_timeout=SHORT, idle_timeout=LONG, body_timeout=LONG)
    with serving(limits=limits) as server, RawClient(server.server_address[1]) as client:
        client.send(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert trickle(client, b"X-Slow: aaaa\r\n") == b""  # cut without an answer
        with RawClient(server.server_address[1]) as other:  # the server serves on
            other.request("GET", "/-/healthy")
            assert other.response().body == b"Healthy\n"


def test_a_client_trickling_its_body_is_cut_at_the_body_deadline() -> None:
    what = Collaborators()
    limits = Limits(body_timeout=SHORT, header_timeout=LONG, idle_timeout=LONG)
    with serving(what, limits=limits) as server, RawClient(server.server_address[1]) as client:
        client.request("POST", "/-/reload", "Content-Length: 1000")
        assert trickle(client, b"x") == b""
    assert what.reload.calls == 0


def test_an_idle_keep_alive_connection_is_closed_at_the_idle_deadline() -> None:
    limits = Limits(idle_timeout=SHORT, header_timeout=LONG)
    with serving(limits=limits) as server, RawClient(server.server_address[1]) as client:
        client.request("GET", "/-/healthy")
        assert client.response().body == b"Healthy\n"
        assert client.closed_by_server() == b""  # it waited for no more than the deadline
        wait_for(lambda: server.open_connections == 0, TIMEOUT, "the connection to be freed")


def big_render() -> list[Chunk]:
    """16 MiB of exposition: more than socket buffers hold."""
    line = b'mudbase_function_up{function="%08d"} 1.0\n'
    piece = b"".join(line % i for i in range(1600))  # 64 KiB or so
    return [[piece] * 256]


def test_a_client_that_stops_reading_is_cut_at_the_write_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    what = Collaborators(functions=big_render)
    limits = Limits(write_timeout=1.0, idle_timeout=LONG, header_timeout=LONG)
    with serving(what, limits=limits) as server:
        client = RawClient(server.server_address[1], receive_buffer=4096)
        client.request("GET", "/metrics")
        wait_for(lambda: server.open_connections == 1, TIMEOUT, "the scrape to start")
        wait_for(lambda: server.open_connections == 0, TIMEOUT, "the write deadline")
        client.close()
    errors = [r for r in caplog.records if r.name == "exporter.web" and r.levelname != "DEBUG"]
    assert errors == []  # a slow client is not the exporter's error


def test_connections_over_the_cap_wait_and_are_served_once_others_end() -> None:
    limits = Limits(max_connections=2, header_timeout=LONG, idle_timeout=LONG)
    with serving(limits=limits) as server:
        port = server.server_address[1]
        first, second = RawClient(port), RawClient(port)
        wait_for(lambda: server.open_connections == 2, TIMEOUT, "two connections")
        third = RawClient(port)
        third.request("GET", "/-/healthy")
        wait_for(lambda: server.capacity_waits == 1, TIMEOUT, "the third to wait for a slot")
        assert third.nothing_received()  # still in the listen backlog
        assert server.open_connections == 2
        first.close()  # a slot frees: the third is accepted and served
        assert third.response().body == b"Healthy\n"
        assert server.open_connections == 2
        second.close()
        third.close()
        wait_for(lambda: server.open_connections == 0, TIMEOUT, "every connection freed")


def test_many_idle_connections_hold_no_more_than_the_cap_and_scrapes_go_on() -> None:
    limits = Limits(max_connections=4, header_timeout=0.1, idle_timeout=0.1)
    with serving(limits=limits) as server:
        port = server.server_address[1]
        threads_before = threading.active_count()
        idle = [RawClient(port) for _ in range(40)]  # connected, and never a byte sent
        most = [0]

        def scraped() -> bool:
            most[0] = max(most[0], server.open_connections)
            return done.is_set()

        done = threading.Event()
        scraper = threading.Thread(target=scrape_metrics, args=(port, done))
        scraper.start()  # waits its turn behind the idle ones, then is served
        wait_for(scraped, TIMEOUT, "a scrape behind 40 idle connections", step=0.001)
        scraper.join(TIMEOUT)
        assert server.capacity_waits >= 1
        assert most[0] <= 4
        for client in idle:
            client.close()
        wait_for(lambda: server.open_connections == 0, TIMEOUT, "every connection freed")
        wait_for(lambda: threading.active_count() == threads_before, TIMEOUT, "every thread ended")


def scrape_metrics(port: int, done: threading.Event) -> None:
    scrape = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    scrape.request("GET", "/metrics")
    answer = scrape.getresponse()
    if answer.status == 200 and b"mudbase_function_up" in answer.read():
        done.set()
    scrape.close()


class HourOldFirstReading:
    """exporter.web's clock: its first reading, the start of the test's request, is an hour
    old (headers that took an hour to arrive, without the test waiting an hour)."""

    def __init__(self) -> None:
        self.readings = 0

    def monotonic(self) -> float:
        self.readings += 1
        return time.monotonic() - (3600 if self.readings == 1 else 0)


def test_the_write_deadline_counts_from_the_end_of_the_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As Go's WriteTimeout does: slow headers (within their own deadline) leave the answer
    its whole write deadline."""
    clock = HourOldFirstReading()
    monkeypatch.setattr(exporter.web, "time", clock)
    limits = Limits(header_timeout=2 * 3600, write_timeout=LONG, idle_timeout=LONG)
    with serving(limits=limits) as server, RawClient(server.server_address[1]) as client:
        client.request("GET", "/-/healthy")
        assert client.response().body == b"Healthy\n"
    assert clock.readings >= 2
