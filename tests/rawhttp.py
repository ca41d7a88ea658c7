"""The exporter's HTTP server in this process, and a client on a raw socket that sees every byte
the server sends: keep-alive, pipelining, request bodies and trickling clients, byte for byte."""

import select
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.exposition import CachedExposition
from exporter.gzipstream import Chunk
from exporter.web import ExporterHTTPServer, start_http_server

TIMEOUT = 10.0  # the longest any socket operation of a test may block


@dataclass
class Reloads:
    """A reload callback that counts its calls."""

    calls: int = 0

    def __call__(self) -> str | None:
        self.calls += 1
        return None


@dataclass
class Collaborators:
    """What a test server serves: a few functions, a status page, and a counted reload."""

    functions: Callable[[], list[Chunk]] = lambda: [[b'mudbase_function_up{function="f"} 1.0\n']]
    live: CollectorRegistry = field(default_factory=CollectorRegistry)
    reload: Reloads = field(default_factory=Reloads)
    landing_page: Callable[[str], bytes] = lambda query: b"<html>status</html>\n"


@contextmanager
def serving(what: Collaborators | None = None, **options: Any) -> Iterator[ExporterHTTPServer]:
    """An ExporterHTTPServer on 127.0.0.1, started and, at the end, shut down."""
    what = what or Collaborators()
    exposition = CachedExposition(what.functions, lambda: 0, what.live)
    server = ExporterHTTPServer(
        ("127.0.0.1", 0),
        exposition,
        landing_page=what.landing_page,
        ready=lambda: True,
        reload=what.reload,
        **options,
    )
    thread = start_http_server(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    raw: bytes  # every byte of it, as received


class RawClient:
    """One connection to 127.0.0.1:`port`, written and read byte by byte."""

    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer is not None:  # before connecting: it sets the window offered
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.reader = self.sock.makefile("rb")

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, *headers: str, body: bytes = b"") -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def response(self, head: bool = False) -> Response:
        """The next response; `head`: the answer to a HEAD, which has no body whatever its
        headers say. Fails if the connection ends before the response does."""
        raw = bytearray()
        status_line = self._line(raw)
        version, status, _ = status_line.split(" ", 2)
        assert version in ("HTTP/1.1", "HTTP/1.0"), f"not a status line: {status_line!r}"
        headers: dict[str, str] = {}
        while line := self._line(raw):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if not head and "content-length" in headers:
            body = self._exactly(int(headers["content-length"]), raw)
        elif not head and headers.get("transfer-encoding") == "chunked":
            body = self._chunked(raw)
        elif not head and headers.get("connection") == "close":
            body = self.reader.read()
            raw += body
        return Response(int(status), headers, body, bytes(raw))

    def _line(self, raw: bytearray) -> str:
        line = self.reader.readline(1 << 16)
        raw += line
        assert line.endswith(b"\r\n"), f"the connection ended mid-response: {bytes(raw)!r}"
        return line[:-2].decode("latin-1")

    def _exactly(self, size: int, raw: bytearray) -> bytes:
        data = self.reader.read(size)
        raw += data
        assert len(data) == size, f"the body ended after {len(data)} of {size} bytes"
        return data

    def _chunked(self, raw: bytearray) -> bytes:
        body = bytearray()
        while size := int(self._line(raw).split(";")[0], 16):
            body += self._exactly(size, raw)
            self._line(raw)
        while self._line(raw):
            pass
        return bytes(body)

    def closed_by_server(self) -> bytes:
        """Everything the server still sends until it closes the connection (fails if it does
        not within TIMEOUT)."""
        rest = bytearray()
        try:
            while data := self.reader.read1(1 << 16):
                rest += data
        except ConnectionResetError:
            pass
        return bytes(rest)

    def nothing_received(self) -> bool:
        """True if no byte from the server is waiting on the socket right now (before any read
        from this connection: the reader buffers what it reads ahead)."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return not readable
