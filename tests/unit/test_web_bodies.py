"""Request bodies framed as Go's net/http frames them: Content-Length or chunked, never both,
bounded in size; nothing a body holds is ever answered as a request of its own."""

import pytest

from exporter.web import MAX_REQUEST_BODY
from tests.rawhttp import Collaborators, RawClient, serving

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + trailer + b"\r\n"


def post_reload(*headers: str) -> bytes:
    lines = ["POST /-/reload HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_chunked_reload_body_is_read_and_never_answered_as_a_request() -> None:
    what = Collaborators()
    with serving(what) as server, RawClient(server.server_address[1]) as client:
        client.send(post_reload("Transfer-Encoding: chunked") + chunked(SMUGGLED))
        client.request("GET", "/-/healthy")
        reloaded = client.response()
        assert (reloaded.status, reloaded.body) == (200, b"Reloaded\n")
        assert client.response().body == b"Healthy\n"  # the next request, not /smuggled
        client.sock.shutdown(1)  # no more requests: the server answers nothing else
        assert client.closed_by_server() == b""
    assert what.reload.calls == 1


def test_a_chunked_body_with_extensions_and_trailers_is_decoded() -> None:
    what = Collaborators()
    body = b"3;name=value\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
    with serving(what) as server, RawClient(server.server_address[1]) as client:
        client.send(post_reload("Transfer-Encoding: Chunked") + body)
        assert client.response().status == 200
        client.request("GET", "/-/healthy")
        assert client.response().body == b"Healthy\n"
    assert what.reload.calls == 1


def test_a_body_with_a_length_keeps_the_connection_in_step() -> None:
    what = Collaborators()
    with serving(what) as server, RawClient(server.server_address[1]) as client:
        client.send(post_reload(f"Content-Length: {len(SMUGGLED)}") + SMUGGLED)
        client.request("GET", "/-/healthy", f"Content-Length: {len(SMUGGLED)}", body=SMUGGLED)
        client.request("GET", "/-/ready")
        assert client.response().body == b"Reloaded\n"
        assert client.response().body == b"Healthy\n"
        assert client.response().body == b"Ready\n"
    assert what.reload.calls == 1


BAD_FRAMING = {
    "Transfer-Encoding and Content-Length": (
        "Transfer-Encoding: chunked",
        f"Content-Length: {len(chunked(SMUGGLED))}",
    ),
    "Content-Length and Transfer-Encoding": (
        "Content-Length: 0",
        "Transfer-Encoding: chunked",
    ),
    "a non-numeric length": ("Content-Length: abc",),
    "a negative length": ("Content-Length: -1",),
    "a signed length": ("Content-Length: +5",),
    "an empty length": ("Content-Length: ",),
    "a list of lengths": ("Content-Length: 5, 5",),
    "two different lengths": ("Content-Length: 5", "Content-Length: 6"),
}


# codings Go's net/http does not implement: a 501
UNSUPPORTED_CODING = {
    "a coding other than chunked": ("Transfer-Encoding: gzip, chunked",),
    "identity": ("Transfer-Encoding: identity",),
    "chunked twice": ("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
}
REFUSED = {
    **{case: (400, headers) for case, headers in BAD_FRAMING.items()},
    **{case: (501, headers) for case, headers in UNSUPPORTED_CODING.items()},
}


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("method", ["POST", "GET", "HEAD"])
def test_bad_framing_is_refused_and_closes_the_connection(case: str, method: str) -> None:
    what = Collaborators()
    path = "/-/reload" if method == "POST" else "/metrics"
    status, headers = REFUSED[case]
    with serving(what) as server, RawClient(server.server_address[1]) as client:
        client.request(method, path, *headers, body=chunked(SMUGGLED) + SMUGGLED)
        refused = client.response(head=method == "HEAD")
        assert refused.status == status
        assert refused.headers["connection"] == "close"
        assert (refused.headers.get("vary") == "Accept-Encoding") is (path == "/metrics")
        if method == "HEAD":
            assert refused.raw.endswith(b"\r\n\r\n")
        assert client.closed_by_server() == b""  # nothing more: /smuggled is never answered
    assert what.reload.calls == 0


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nabc\r\n0\r\n\r\n",  # not a hexadecimal size
        b"0x3\r\nabc\r\n0\r\n\r\n",
        b" 3\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabcd\r\n0\r\n\r\n",  # a chunk longer than its size
        b"3\nabc\n0\n\n",  # bare line feeds
    ],
)
def test_a_malformed_chunked_body_is_a_400_and_no_reload(body: bytes) -> None:
    what = Collaborators()
    with serving(what) as server, RawClient(server.server_address[1]) as client:
        client.send(post_reload("Transfer-Encoding: chunked") + body + SMUGGLED)
        refused = client.response()
        assert refused.status == 400
        assert refused.headers["connection"] == "close"
        assert client.closed_by_server() == b""
    assert what.reload.calls == 0


def test_a_body_over_the_limit_is_a_413_and_no_reload() -> None:
    what = Collaborators()
    too_long = MAX_REQUEST_BODY + 1
    with serving(what) as server:
        with RawClient(server.server_address[1]) as client:  # announced: refused at once
            client.send(post_reload(f"Content-Length: {too_long}") + b"x" * 1000)
            refused = client.response()
            assert refused.status == 413
            assert refused.headers["connection"] == "close"
            assert client.closed_by_server() == b""
        with RawClient(server.server_address[1]) as client:  # chunked: refused once over
            chunks = chunked(*[b"x" * 4096] * (too_long // 4096 + 1))
            client.send(post_reload("Transfer-Encoding: chunked") + chunks[: too_long + 8192])
            refused = client.response()
            assert refused.status == 413
            assert refused.headers["connection"] == "close"
            assert client.closed_by_server() == b""
        with RawClient(server.server_address[1]) as client:  # at the limit: fine
            client.send(post_reload("Transfer-Encoding: chunked"))
            client.send(chunked(b"x" * MAX_REQUEST_BODY))
            assert client.response().status == 200
    assert what.reload.calls == 1
