"""What the HTTP server answers, byte for byte: /metrics whole or a 500 (never a truncated 200),
gzip as Accept-Encoding negotiates it, and no body on any answer to a HEAD."""

import base64
import gzip
import logging
from collections.abc import Callable, Iterator, Sequence

import bcrypt
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.gzipstream import Chunk
from exporter.httpwire import Connection, accepts_gzip
from exporter.landing import parse_query
from exporter.webconfig import BasicAuth
from tests.helpers import wait_for
from tests.rawhttp import Collaborators, RawClient, serving

FUNCTIONS = b'mudbase_function_up{function="f"} 1.0\n'


class Broken(Collector):
    """A collector with a bug."""

    def collect(self) -> Iterator[Metric]:
        raise RuntimeError("a bug in a collector")


def failing_render() -> list[Chunk]:
    raise RuntimeError("a bug in rendering")


def broken_collector() -> Collaborators:
    live = CollectorRegistry()
    live.register(Broken())
    return Collaborators(live=live)


def broken_page(query: str) -> bytes:
    raise RuntimeError("a bug in the status page")


FAILURES: dict[str, tuple[Callable[[], Collaborators], str]] = {  # -> served, failing path
    "the first render fails": (lambda: Collaborators(functions=failing_render), "/metrics"),
    "a collector raises": (broken_collector, "/metrics"),
    "the status page raises": (lambda: Collaborators(landing_page=broken_page), "/"),
}


def web_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "exporter.web" and r.levelno >= logging.ERROR]


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_a_failed_answer_is_a_500_with_a_length_logged_once(
    failure: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(level)
    what, path = FAILURES[failure]
    with serving(what()) as server, RawClient(server.server_address[1]) as client:
        client.request("GET", path)
        answer = client.response()
        assert answer.status == 500
        assert int(answer.headers["content-length"]) == len(answer.body)
        if path == "/metrics":
            assert answer.headers["vary"] == "Accept-Encoding"
        assert answer.body.endswith(b"\n")
        assert answer.body.count(b"\n") == 1  # one line
        client.request("GET", "/-/healthy")  # the connection is still in step
        assert client.response().body == b"Healthy\n"
    errors = web_errors(caplog)
    assert len(errors) == 1
    assert "\n" not in errors[0].getMessage()
    assert bool(errors[0].exc_info) is (level == logging.DEBUG)  # the traceback at debug only


def test_a_scrape_is_whole_with_its_length_for_get_head_and_http_1_0() -> None:
    with serving() as server, RawClient(server.server_address[1]) as client:
        client.request("GET", "/metrics")
        full = client.response()
        assert full.status == 200
        assert full.body.startswith(FUNCTIONS)
        assert "transfer-encoding" not in full.headers
        client.request("HEAD", "/metrics")
        head = client.response(head=True)
        assert head.raw.endswith(b"\r\n\r\n")
        assert int(head.headers["content-length"]) == len(full.body)
        client.request("GET", "/-/healthy")  # nothing followed the HEAD's headers
        assert client.response().body == b"Healthy\n"
        old = RawClient(server.server_address[1])
        old.send(b"GET /metrics HTTP/1.0\r\n\r\n")  # no chunks in HTTP/1.0: a length
        answer = old.response()
        assert answer.status == 200
        assert int(answer.headers["content-length"]) == len(answer.body)
        assert answer.body.startswith(FUNCTIONS)
        assert old.closed_by_server() == b""
        old.close()


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("Gzip ; Q=1", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0.001", True),
        ("gzip;q=0.5", True),  # identity not named: gzip is preferred
        ("gzip;level=9;q=0.5", True),
        ("deflate, br", False),
        ("br;q=1.0, gzip;q=0.8", True),
        ("*", True),
        ("*;q=0", False),
        ("*;q=0, gzip", True),
        ("gzip;q=0, *", False),
        ("identity", False),
        ("identity, gzip", True),  # equal weights: gzip
        ("identity, gzip;q=0.5", False),  # identity preferred
        ("gzip;q=0.5, *;q=0.8", False),  # identity weighs as `*`
        ("identity;q=0, gzip;q=0.1", True),
        ("identity;q=0", False),  # nothing acceptable: identity is sent anyway
        ("gzip;q=1.5", False),  # not a qvalue: the element is ignored
        ("gzip;q=abc", False),
        ("gzip;q=", False),
        ("gzipped", False),
    ],
)
def test_accept_encoding_is_negotiated_as_rfc_9110_says(header: str | None, gzipped: bool) -> None:
    assert accepts_gzip(None if header is None else [header]) is gzipped


def test_accept_encoding_fields_are_combined() -> None:
    assert accepts_gzip(["deflate", "gzip"]) is True
    assert accepts_gzip(["gzip;q=0", "deflate"]) is False


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [("GZIP", True), ("gzip;q=0", False), ("deflate, gzip;q=0.5", True), ("*;q=0", False)],
)
def test_metrics_answers_are_gzipped_as_negotiated_and_vary_on_it(
    header: str, gzipped: bool
) -> None:
    with serving() as server, RawClient(server.server_address[1]) as client:
        client.request("GET", "/metrics", f"Accept-Encoding: {header}")
        answer = client.response()
        client.request("HEAD", "/metrics", f"Accept-Encoding: {header}")
        head = client.response(head=True)
    for response in (answer, head):
        assert response.status == 200
        assert response.headers["vary"] == "Accept-Encoding"
        assert ("content-encoding" in response.headers) is gzipped
    assert head.headers["content-length"] == answer.headers["content-length"]
    body = gzip.decompress(answer.body) if gzipped else answer.body
    assert body.startswith(FUNCTIONS)


PASSWORD = "scrape-pass-42"


def basic(user: str, password: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def auth() -> BasicAuth:
    return BasicAuth({"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()})


HEADS = {  # a HEAD that gets an error status -> (path, headers, status)
    "refused by basic auth": ("/metrics", (basic("prometheus", "wrong"),), 401),
    "not found": ("/no-such-page", (basic("prometheus", PASSWORD),), 404),
    "reload is POST only": ("/-/reload", (basic("prometheus", PASSWORD),), 405),
    "a bad query": ("/?page=-1", (basic("prometheus", PASSWORD),), 400),
}


def page_refusing_bad_queries(query: str) -> bytes:
    parse_query(query)  # the status page's own validation: QueryError, a 400
    return b"<html>status</html>\n"


@pytest.mark.parametrize("case", sorted(HEADS))
def test_a_head_answer_has_no_body_whatever_its_status(case: str, auth: BasicAuth) -> None:
    path, headers, status = HEADS[case]
    landing = Collaborators(landing_page=page_refusing_bad_queries)
    with serving(landing, auth=auth) as server, RawClient(server.server_address[1]) as client:
        client.request("HEAD", path, *headers)
        client.request("GET", "/-/healthy", basic("prometheus", PASSWORD))  # pipelined
        head = client.response(head=True)
        assert head.status == status
        assert head.raw.endswith(b"\r\n\r\n")  # the headers, then the next response at once
        assert (head.headers.get("vary") == "Accept-Encoding") is (path == "/metrics")
        get = client.response()
        assert get.raw.startswith(b"HTTP/1.1 200 ")
        assert get.body == b"Healthy\n"
        client.request("GET", "/-/ready", basic("prometheus", PASSWORD))
        assert client.response().body == b"Ready\n"  # nothing stray in between


def test_a_head_of_a_failed_scrape_has_no_body() -> None:
    failing = Collaborators(functions=failing_render)
    with serving(failing) as server, RawClient(server.server_address[1]) as client:
        client.request("HEAD", "/metrics")
        client.request("GET", "/-/healthy")
        head = client.response(head=True)
        assert head.status == 500
        assert head.raw.endswith(b"\r\n\r\n")
        assert client.response().body == b"Healthy\n"


@pytest.mark.parametrize("line", [b"GARBAGE", b"GET /metrics", b"GET /metrics HTTP/9.9 x"])
def test_a_malformed_request_line_is_a_400_with_a_status_line(line: bytes) -> None:
    with serving() as server, RawClient(server.server_address[1]) as client:
        client.send(line + b"\r\n\r\n")
        refused = client.response()
        assert refused.status == 400
        assert refused.headers["connection"] == "close"
        assert client.closed_by_server() == b""


def test_a_bug_after_the_answer_began_is_one_error_line_and_nothing_on_stderr(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    def broken_write(self: Connection, pieces: Sequence[bytes]) -> None:
        raise RuntimeError("a bug in writing")

    caplog.set_level(logging.INFO)
    with serving() as server:
        monkeypatch.setattr(Connection, "write_pieces", broken_write)
        with RawClient(server.server_address[1]) as client:
            client.request("GET", "/-/healthy")
            assert client.closed_by_server() == b""  # nothing could be sent
        wait_for(lambda: web_errors(caplog) != [], 10, "the error to be logged")
    (error,) = web_errors(caplog)
    assert error.getMessage() == "request failed"
    assert "RuntimeError: a bug in writing" in str(error.__dict__["error"])
    assert not error.exc_info  # the traceback at debug level only
    assert capfd.readouterr().err == ""
