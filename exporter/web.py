"""The exporter's HTTP server: /metrics, /, /-/healthy, /-/ready, POST /-/reload.

A ThreadingHTTPServer in its own thread, so scrapes never wait on the asyncio loop that polls
Mudbase. It only serves what the state holds. It bounds what clients hold of it as Go's
net/http does for Prometheus' own exporters (`Limits`): connections at once, more waiting in
the listen backlog, and deadlines for a request's headers, its body, the wait between two
requests and the writing of an answer. An answer is complete before its status goes out, so a
failure is a 500, never a truncated 200; a client going away is one line at debug level.
"""

import logging
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter.exposition import CONTENT_TYPE, CachedExposition
from exporter.httpwire import (
    BodyTooLarge,
    Connection,
    FramingError,
    UnsupportedTransferCoding,
    accepts_gzip,
    body_length,
    read_body,
)
from exporter.landing import QueryError
from exporter.webconfig import BasicAuth, TLSContextSource

log = logging.getLogger("exporter.web")
MAX_REQUEST_BODY = 64 * 1024
_TOO_LARGE = f"a request body is at most {MAX_REQUEST_BODY // 1024} KiB"
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Limits:
    """What clients may hold of the server, as Go's http.Server and netutil.LimitListener
    bound it for Prometheus: connections open at once (more wait in the listen backlog), and
    deadlines in seconds for a request's line and headers, its body, the wait for the next
    request on a kept-alive connection, and the writing of one answer."""

    max_connections: int = 64
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    idle_timeout: float = 90.0  # beyond Prometheus' default 1m scrape interval
    write_timeout: float = 120.0  # a 25 MB scrape over a slow link


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
        limits: Limits | None = None,
    ) -> None:
        self.exposition = exposition
        self.headers = dict(headers or {})  # the web config's, added to every response
        self.landing_page = landing_page
        self.ready = ready
        self.health_problems = health_problems
        self.reload = reload
        self.auth = auth or BasicAuth({})
        self.tls = tls
        self.limits = limits or Limits()
        self.capacity_waits = 0  # times a connection waited in the backlog for a free slot
        self._open = 0
        self._slot_freed = threading.Condition()
        self._stopping = False
        self._stopped = threading.Event()
        self._wakeup, self._wake = socket.socketpair()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        if tls is not None:
            self.socket = tls.current().wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
        self.socket.setblocking(False)  # a connection gone before accept() blocks nothing

    @property
    def open_connections(self) -> int:
        return self._open

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections while fewer than `max_connections` are open; one more waits in
        the listen backlog until another ends, as with Go's netutil.LimitListener. (No
        `poll_interval`: shutdown() wakes the loop at once.)"""
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                selector.register(self._wakeup, selectors.EVENT_READ)
                while not self._stopping:
                    ready = {key.fileobj for key, _ in selector.select()}
                    if self.socket in ready and self._take_slot():
                        self._accept()
        finally:
            self._stopping = False
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever and wait until it has returned."""
        with self._slot_freed:
            self._stopping = True
            self._slot_freed.notify_all()
        self._wake.send(b"\0")
        self._stopped.wait()
        self._wakeup.recv(1 << 10)

    def server_close(self) -> None:
        super().server_close()
        self._wakeup.close()
        self._wake.close()

    def _take_slot(self) -> bool:
        """One of the `max_connections` slots, waiting for one to free if none is; False if
        the server stops meanwhile."""
        with self._slot_freed:
            if self._open >= self.limits.max_connections:
                self.capacity_waits += 1
                log.debug(
                    "connection limit reached: the next connection waits in the backlog",
                    extra={"max_connections": self.limits.max_connections},
                )
            self._slot_freed.wait_for(
                lambda: self._stopping or self._open < self.limits.max_connections
            )
            if self._stopping:
                return False
            self._open += 1
            return True

    def _free_slot(self) -> None:
        with self._slot_freed:
            self._open -= 1
            self._slot_freed.notify()

    def _accept(self) -> None:
        """Accept one connection into the slot taken for it, served in a thread of its own."""
        try:
            request, client_address = self.get_request()
        except OSError:  # gone already, or nothing after all
            self._free_slot()
            return
        try:
            self.process_request(request, client_address)
        except Exception:  # no thread to serve it: the slot is free again
            self._free_slot()
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._free_slot()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the request's own thread: the TLS handshake first, within the header deadline."""
        if isinstance(request, ssl.SSLSocket):
            if self.tls is not None:
                request.context = self.tls.current()  # a renewed certificate, if any
            request.settimeout(self.limits.header_timeout)
            try:
                request.do_handshake()
            except (OSError, ssl.SSLError) as err:
                log.debug(
                    "TLS handshake failed", extra={"client": client_address[0], "error": str(err)}
                )
                return
            if not self._admits(request, client_address[0]):
                return
        super().finish_request(request, client_address)

    def _admits(self, request: ssl.SSLSocket, client: str) -> bool:
        """client_allowed_sans, checked on the verified certificate after the handshake."""
        refusal = self.tls.admits(request) if self.tls is not None else None
        if refusal is not None:
            log.warning("TLS client refused", extra={"client": client, "reason": refusal})
        return refusal is None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that ended in an exception: one log line, never a traceback on stderr."""
        _log_failure(sys.exc_info()[1], client_address[0])


def _log_failure(error: BaseException | None, client: str, path: str | None = None) -> None:
    """One line: a client that went away (a hang-up, a reset, a deadline) at debug level;
    anything else is a bug, at error level, with its traceback at debug level only."""
    where = {"client": client} if path is None else {"client": client, "path": path}
    reason = f"{type(error).__name__}: {error}"
    if isinstance(error, ConnectionError | TimeoutError | ssl.SSLError):
        log.debug("client went away", extra={**where, "reason": reason})
        return
    traceback = error if log.isEnabledFor(logging.DEBUG) else None
    log.error("request failed", extra={**where, "error": reason}, exc_info=traceback)


class _Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "mudbase-exporter"
    error_message_format = "%(code)d %(message)s: %(explain)s\n"  # for send_error
    default_request_version = "HTTP/1.1"  # an error before the version is read has a status line
    error_content_type = _TEXT

    def setup(self) -> None:
        """The socket, read and written under the deadlines of `Limits`."""
        self.connection = self.request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.wire = Connection(self.connection)
        self.reader = self.wire.reader()
        self.rfile = self.reader
        self.wfile = self.wire.writer()
        self.served = 0
        self.started = False  # this request's answer has begun
        self.unread_input = False  # refused before its body was read: linger before closing

    def finish(self) -> None:
        super().finish()
        if self.unread_input:
            self.wire.close_gently()

    def handle_one_request(self) -> None:
        """The next request: its first byte within the idle deadline (after the first request),
        its line and headers within the header deadline, its answer within the write one (from
        the end of the headers; an answer to headers that never ended, from the start)."""
        limits = self.server.limits
        if self.served and not self._next_request_arrives(limits.idle_timeout):
            self.close_connection = True
            return
        start = time.monotonic()
        self.wire.read_by = start + limits.header_timeout
        self.wire.write_by = start + limits.write_timeout
        self.served += 1
        self.started = False
        self.path = ""  # set once the request line is read; not the last request's
        super().handle_one_request()

    def _next_request_arrives(self, idle_timeout: float) -> bool:
        self.wire.read_by = time.monotonic() + idle_timeout
        try:
            return bool(self.reader.peek(1))
        except TimeoutError:
            return False

    def parse_request(self) -> bool:
        """The request line and headers, then the whole body within the body deadline: a body
        that cannot be framed safely is a 400 (a transfer coding other than chunked a 501), one
        too large a 413; each closes the connection."""
        if not super().parse_request():
            return False
        # the answer's deadline counts from the end of the headers, as Go's WriteTimeout does
        self.wire.write_by = time.monotonic() + self.server.limits.write_timeout
        if len(self.requestline.split()) != 3:  # HTTP/0.9's "GET /path": no headers, no status
            self.send_error(HTTPStatus.BAD_REQUEST, explain="a request line ends with its version")
            return False
        try:
            length = body_length(self.headers)
            self.wire.read_by = time.monotonic() + self.server.limits.body_timeout
            read_body(self.reader, length, MAX_REQUEST_BODY)  # no route reads a body
        except UnsupportedTransferCoding as err:
            return self._refuse(HTTPStatus.NOT_IMPLEMENTED, str(err))
        except FramingError as err:
            return self._refuse(HTTPStatus.BAD_REQUEST, str(err))
        except BodyTooLarge:
            return self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _TOO_LARGE)
        return True

    def _refuse(self, status: HTTPStatus, why: str) -> bool:
        self.unread_input = True
        self.send_error(status, explain=why)  # Connection: close
        return False

    def send_response(self, code: int, message: str | None = None) -> None:
        self.started = True
        super().send_response(code, message)

    def do_GET(self) -> None:
        """Every method: routed by path, then by method; a bug before the answer is a 500."""
        path, _, query = self.path.partition("?")
        try:
            if self._authorised():
                self._route(path, query)
        except Exception as err:
            if self.started:  # mid-answer: the connection closes, and handle_error logs it
                raise
            self._fail(err)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _authorised(self) -> bool:
        auth = self.server.auth
        if not auth.enabled or auth.allows(self.headers.get("Authorization")):
            return True
        challenge = {"WWW-Authenticate": 'Basic realm="mudbase-exporter"'}
        self._send(HTTPStatus.UNAUTHORIZED, b"Unauthorized\n", headers=challenge)
        return False

    def _route(self, path: str, query: str) -> None:
        if path == "/-/reload" and self.command == "POST":
            self._reload()
        elif path == "/-/reload":
            self._method_not_allowed("POST")
        elif self.command not in ("GET", "HEAD"):
            self._method_not_allowed("GET, HEAD")
        elif path == "/metrics":
            self._metrics()
        elif path == "/":
            self._landing(query)
        elif path == "/-/healthy":
            self._healthy()
        elif path == "/-/ready":
            self._ready()
        else:
            self._send(HTTPStatus.NOT_FOUND, b"Not found\n")

    def _method_not_allowed(self, allowed: str) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"", headers={"Allow": allowed})

    def _reload(self) -> None:
        error = self.server.reload()
        if error is None:
            self._send(HTTPStatus.OK, b"Reloaded\n")
        else:
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"{error}\n".encode())

    def _metrics(self) -> None:
        """The whole exposition first, then the status with its length: a failure is a 500."""
        gzipped = accepts_gzip(self.headers.get_all("Accept-Encoding"))
        try:
            pieces = self.server.exposition.pieces(gzipped)
        except Exception as err:
            self._fail(err)
            return
        headers = {"Content-Encoding": "gzip"} if gzipped else {}
        self._send_pieces(HTTPStatus.OK, pieces, CONTENT_TYPE, headers)

    def _landing(self, query: str) -> None:
        try:
            body = self.server.landing_page(query)
        except QueryError as err:
            self._send(HTTPStatus.BAD_REQUEST, f"{err}\n".encode())
            return
        self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")

    def _healthy(self) -> None:
        problems = self.server.health_problems()
        if problems:
            body = "Unhealthy: " + "; ".join(problems) + "\n"
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, body.encode())
        else:
            self._send(HTTPStatus.OK, b"Healthy\n")

    def _ready(self) -> None:
        if self.server.ready():
            self._send(HTTPStatus.OK, b"Ready\n")
        else:
            body = b"Not ready: some functions have not been polled yet\n"
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, body)

    def _fail(self, error: Exception) -> None:
        """A bug before the answer started: logged once, answered with a one-line 500."""
        _log_failure(error, self.client_address[0], self.path.partition("?")[0])
        body = b"Internal Server Error: see the exporter's log\n"
        self._send(HTTPStatus.INTERNAL_SERVER_ERROR, body)

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str = _TEXT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._send_pieces(status, [body], content_type, headers or {})

    def _send_pieces(
        self,
        status: HTTPStatus,
        pieces: Sequence[bytes],
        content_type: str,
        headers: Mapping[str, str],
    ) -> None:
        """The status and headers with the body's length, then the body's pieces, never joined
        (none in answer to a HEAD, whatever the status)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(map(len, pieces))))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wire.write_pieces(pieces)

    def end_headers(self) -> None:
        """Every answer's last headers: Vary on any answer to /metrics (gzipped or not as
        Accept-Encoding says), and the web config's."""
        if self.path.partition("?")[0] == "/metrics":
            self.send_header("Vary", "Accept-Encoding")
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http request", extra={"client": self.address_string(), "line": format % args})


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
