"""The exporter's HTTP server: /metrics, /, /-/healthy, /-/ready.

A ThreadingHTTPServer in its own thread, so scrapes never wait on the asyncio loop that polls
Mudbase. It only serves what the state holds.
"""

import io
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter.exposition import CONTENT_TYPE, CachedExposition
from exporter.landing import QueryError
from exporter.webconfig import BasicAuth, TLSContextSource

log = logging.getLogger("exporter.web")
TLS_HANDSHAKE_TIMEOUT = 10.0
MAX_POST_BODY = 64 * 1024
_TEXT = "text/plain; charset=utf-8"
IOV_BATCH = 512  # pieces per sendmsg (Linux takes up to 1024)
WRITE_GROUP = 64 * 1024  # TLS: small pieces are joined into writes of about this size


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the listen backlog (socketserver's default is 5)

    def __init__(
        self,
        address: tuple[str, int],
        exposition: CachedExposition,
        *,
        landing_page: Callable[[str], bytes],  # the query string -> the page
        ready: Callable[[], bool],
        health_problems: Callable[[], list[str]] = list,
        reload: Callable[[], str | None],
        tls: TLSContextSource | None = None,
        auth: BasicAuth | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.exposition = exposition
        self.headers = dict(headers or {})  # the web config's, added to every response
        self.landing_page = landing_page
        self.ready = ready
        self.health_problems = health_problems
        self.reload = reload
        self.auth = auth or BasicAuth({})
        self.tls = tls
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        if tls is not None:
            self.socket = tls.current().wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the request's own thread: the TLS handshake first, bounded in time."""
        if isinstance(request, ssl.SSLSocket):
            if self.tls is not None:
                request.context = self.tls.current()  # a renewed certificate, if any
            request.settimeout(TLS_HANDSHAKE_TIMEOUT)
            try:
                request.do_handshake()
            except (OSError, ssl.SSLError) as err:
                log.debug(
                    "TLS handshake failed", extra={"client": client_address[0], "error": str(err)}
                )
                return
            request.settimeout(None)
            if not self._admits(request, client_address[0]):
                return
        super().finish_request(request, client_address)

    def _admits(self, request: ssl.SSLSocket, client: str) -> bool:
        """client_allowed_sans, checked on the verified certificate after the handshake."""
        refusal = self.tls.admits(request) if self.tls is not None else None
        if refusal is not None:
            log.warning("TLS client refused", extra={"client": client, "reason": refusal})
        return refusal is None


class _Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    disable_nagle_algorithm = True
    timeout = 30  # an idle keep-alive connection, or a client gone silent, frees its thread
    protocol_version = "HTTP/1.1"
    server_version = "mudbase-exporter"

    def do_GET(self) -> None:
        if self._authorised():
            self._dispatch(send_body=True)

    def do_HEAD(self) -> None:
        if self._authorised():
            self._dispatch(send_body=False)

    def _authorised(self) -> bool:
        if not self.server.auth.enabled or self.server.auth.allows(
            self.headers.get("Authorization")
        ):
            return True
        body = b"Unauthorized\n"
        self.send_response(HTTPStatus.UNAUTHORIZED)
        self.send_header("WWW-Authenticate", 'Basic realm="mudbase-exporter"')
        self.send_header("Content-Type", _TEXT)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return False

    def do_POST(self) -> None:
        self._discard_body()  # keep-alive connections stay in sync
        if not self._authorised():
            return
        if self.path.split("?", 1)[0] != "/-/reload":
            self._method_not_allowed()
            return
        error = self.server.reload()
        if error is None:
            self._send(HTTPStatus.OK, b"Reloaded\n", _TEXT, send_body=True)
        else:
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"{error}\n".encode(), _TEXT, True)

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length", "0")
        if length.isdigit() and 0 < int(length) <= MAX_POST_BODY:
            self.rfile.read(int(length))
        elif length.isdigit() and int(length) > MAX_POST_BODY:
            self.close_connection = True

    def _method_not_allowed(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "POST" if self.path.startswith("/-/reload") else "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_DELETE = do_PATCH = _method_not_allowed

    def _dispatch(self, send_body: bool) -> None:
        path, _, query = self.path.partition("?")
        if path == "/metrics":
            self._metrics(send_body)
        elif path == "/":
            self._landing(query, send_body)
        elif path == "/-/healthy":
            self._healthy(send_body)
        elif path == "/-/reload":
            self._method_not_allowed()
        elif path == "/-/ready":
            ready = self.server.ready()
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            body = b"Ready\n" if ready else b"Not ready: some functions have not been polled yet\n"
            self._send(status, body, "text/plain; charset=utf-8", send_body)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"Not found\n", "text/plain; charset=utf-8", send_body)

    def _healthy(self, send_body: bool) -> None:
        problems = self.server.health_problems()
        if problems:
            body = "Unhealthy: " + "; ".join(problems) + "\n"
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, body.encode(), _TEXT, send_body)
        else:
            self._send(HTTPStatus.OK, b"Healthy\n", _TEXT, send_body)

    def _landing(self, query: str, send_body: bool) -> None:
        try:
            body = self.server.landing_page(query)
        except QueryError as err:
            self._send(HTTPStatus.BAD_REQUEST, f"{err}\n".encode(), _TEXT, send_body)
            return
        self._send(HTTPStatus.OK, body, "text/html; charset=utf-8", send_body)

    def _metrics(self, send_body: bool) -> None:
        """Chunked: the per-function part goes out while the self-metrics are collected (a
        HEAD answer, or one to HTTP/1.0, which has no chunks, has the whole length instead)."""
        gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", CONTENT_TYPE)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        if not send_body or self.request_version != "HTTP/1.1":
            pieces = self.server.exposition.pieces(gzipped)
            self.send_header("Content-Length", str(sum(map(len, pieces))))
            self.end_headers()
            if send_body:
                write_pieces(self.connection, self.wfile, pieces)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first, rest = self.server.exposition.answer(gzipped)
        write_pieces(self.connection, self.wfile, _chunk(first))
        write_pieces(self.connection, self.wfile, [*_chunk(rest()), b"0\r\n\r\n"])

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        send_body: bool,
        gzipped: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def end_headers(self) -> None:
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http request", extra={"client": self.address_string(), "line": format % args})


def write_pieces(
    connection: socket.socket, wfile: io.BufferedIOBase, pieces: Sequence[bytes]
) -> None:
    """The pieces in order, without joining them: a plain socket sends them with scatter-gather
    writes of up to `IOV_BATCH` pieces; TLS writes them one by one, small ones grouped."""
    if isinstance(connection, ssl.SSLSocket) or not hasattr(connection, "sendmsg"):
        for batch in _grouped(pieces, WRITE_GROUP):
            wfile.write(batch)
        return
    views = [memoryview(piece) for piece in pieces if piece]
    first = 0
    while first < len(views):
        sent = connection.sendmsg(views[first : first + IOV_BATCH])
        while sent and sent >= len(views[first]):
            sent -= len(views[first])
            first += 1
        if sent:
            views[first] = views[first][sent:]


def _chunk(pieces: list[bytes]) -> list[bytes]:
    """The pieces as one HTTP/1.1 chunk (none when empty: a chunk of 0 ends the body)."""
    length = sum(map(len, pieces))
    return [b"%x\r\n" % length, *pieces, b"\r\n"] if length else []


def _grouped(pieces: Sequence[bytes], size: int) -> Iterator[bytes]:
    """Large pieces as they are, runs of small ones joined up to about `size` bytes."""
    small: list[bytes] = []
    length = 0
    for piece in pieces:
        if len(piece) >= size:
            if small:
                yield b"".join(small)
                small, length = [], 0
            yield piece
            continue
        small.append(piece)
        length += len(piece)
        if length >= size:
            yield b"".join(small)
            small, length = [], 0
    if small:
        yield b"".join(small)


def parse_listen_address(text: str) -> tuple[str, int]:
    """`host:port`, `:port` (all interfaces) or `[::1]:port` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {text!r}: use HOST:PORT or :PORT")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)  # noqa: S104 - ':PORT' means every interface


def start_http_server(server: ExporterHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread
