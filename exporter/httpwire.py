"""HTTP/1.1 on the wire, where the standard library's server falls short of Go's net/http.

- Request bodies: framed by Content-Length or chunked, never both, bounded in size, and read
  whole before the request is answered, so no byte of a body is ever parsed as a request.
- Accept-Encoding: negotiated as RFC 9110 says (weights, `*`, `identity`), not matched as text.
- Socket I/O under deadlines: every blocking read or write waits at most until a point in time
  the server sets per phase (headers, body, idle, response), where a socket timeout bounds each
  operation apart and a client sending a byte at a time never trips it.
"""

import io
import math
import re
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from email.message import Message
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

IOV_BATCH = 512  # pieces per sendmsg (Linux takes up to 1024)
WRITE_GROUP = 64 * 1024  # TLS: small pieces are joined into writes of about this size
MAX_CHUNK_LINE = 4096  # a chunk-size line or a trailer field of a chunked body
MAX_TRAILER_FIELDS = 64
LINGER = 0.5  # seconds a refused client gets to read its answer before the socket closes
LINGER_BYTES = 256 * 1024  # the most a refused client's unread input is read and dropped

_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


class FramingError(ValueError):
    """A request whose body cannot be delimited safely: answered with a 400, then closed."""


class UnsupportedTransferCoding(FramingError):
    """A Transfer-Encoding other than one `chunked`: answered with a 501 (as Go's net/http
    does), then closed."""


class BodyTooLarge(ValueError):
    """A request body longer than the server takes: answered with a 413, then closed."""


# -- request bodies ------------------------------------------------------------------------


def body_length(headers: Message) -> int | None:
    """The body's length from Content-Length (0 without one), or None for a chunked body.

    FramingError for Transfer-Encoding with Content-Length (which RFC 9112 calls a likely
    smuggling attempt), or a Content-Length that is not one decimal number (repeated only with
    the same value); UnsupportedTransferCoding for a Transfer-Encoding other than one
    `chunked`, as Go's net/http refuses it."""
    codings = headers.get_all("Transfer-Encoding") or []
    lengths = headers.get_all("Content-Length") or []
    if codings:
        if lengths:
            raise FramingError("both Transfer-Encoding and Content-Length")
        if len(codings) != 1 or codings[0].strip().lower() != "chunked":
            raise UnsupportedTransferCoding("unsupported Transfer-Encoding")
        return None
    if not lengths:
        return 0
    values = {str(value).strip() for value in lengths}
    value = values.pop()
    if values or not (value.isascii() and value.isdigit()):
        raise FramingError("invalid Content-Length")
    return int(value)


def read_body(reader: io.BufferedIOBase, length: int | None, limit: int) -> bytes:
    """The whole body, decoded if chunked (`length` None); BodyTooLarge past `limit` bytes,
    FramingError for a malformed chunk or a body cut short."""
    if length is None:
        return _read_chunked(reader, limit)
    if length > limit:
        raise BodyTooLarge(f"a body of {length} bytes")
    return _read_exactly(reader, length)


def _read_chunked(reader: io.BufferedIOBase, limit: int) -> bytes:
    body = bytearray()
    while size := _chunk_size(_crlf_line(reader)):
        if len(body) + size > limit:
            raise BodyTooLarge(f"a chunked body of more than {limit} bytes")
        body += _read_exactly(reader, size)
        if _crlf_line(reader):
            raise FramingError("a chunk longer than its size")
    for _ in range(MAX_TRAILER_FIELDS):  # trailer fields, ignored, up to the empty line
        if not _crlf_line(reader):
            return bytes(body)
    raise FramingError("too many trailer fields")


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0]  # chunk extensions are ignored
    if not _CHUNK_SIZE.fullmatch(size):
        raise FramingError("invalid chunk size")
    return int(size, 16)


def _crlf_line(reader: io.BufferedIOBase) -> bytes:
    line = reader.readline(MAX_CHUNK_LINE)
    if not line.endswith(b"\r\n"):
        raise FramingError("a chunked body's line too long, cut short or not ended by CRLF")
    return line[:-2]


def _read_exactly(reader: io.BufferedIOBase, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise FramingError("the body ended early")
    return data


# -- content negotiation -------------------------------------------------------------------


def accepts_gzip(fields: Sequence[str] | None) -> bool:
    """Whether Accept-Encoding (all its fields, or None without one) makes gzip the answer.

    RFC 9110 12.5.3: codings are case-insensitive; q=0 means not acceptable; `*` weighs for
    every coding not named; identity weighs as named, else as `*`, else it is only the
    fallback. gzip when its weight is above 0 and at least identity's. An element with an
    invalid weight is ignored."""
    weights: dict[str, float] = {}
    for element in ",".join(fields or []).split(","):
        coding, *parameters = (part.strip() for part in element.split(";"))
        weight = _weight(parameters)
        if coding and weight is not None:
            weights[coding.lower()] = max(weight, weights.get(coding.lower(), 0.0))
    others = weights.get("*")
    gzip = weights.get("gzip", weights.get("x-gzip", others or 0.0))
    identity = weights.get("identity", others or 0.0)
    return gzip > 0 and gzip >= identity


def _weight(parameters: list[str]) -> float | None:
    """The `q` parameter (1 without one), or None when it is not a qvalue."""
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            value = value.strip()
            return float(value) if _QVALUE.fullmatch(value) else None
    return 1.0


# -- socket I/O under deadlines ------------------------------------------------------------


class Connection:
    """A client's socket, read and written under deadlines: `read_by` and `write_by`, in
    time.monotonic() seconds, which the server moves as a request goes. A blocking call waits
    at most until its deadline; past it, TimeoutError."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.read_by = math.inf
        self.write_by = math.inf

    def reader(self) -> io.BufferedReader:
        return io.BufferedReader(_Reader(self))

    def writer(self) -> io.BufferedIOBase:
        return _Writer(self)

    def recv_into(self, buffer: "WriteableBuffer") -> int:
        self._wait_until(self.read_by)
        return self.sock.recv_into(buffer)

    def write_pieces(self, pieces: Sequence[bytes]) -> None:
        """The pieces in order, without joining them: a plain socket sends them with
        scatter-gather writes of up to `IOV_BATCH` pieces; TLS writes them one by one, small
        ones grouped."""
        if isinstance(self.sock, ssl.SSLSocket) or not hasattr(self.sock, "sendmsg"):
            for group in _grouped(pieces, WRITE_GROUP):
                self._send_all(memoryview(group))
            return
        views = [memoryview(piece) for piece in pieces if piece]
        first = 0
        while first < len(views):
            self._wait_until(self.write_by)
            sent = self.sock.sendmsg(views[first : first + IOV_BATCH])
            while sent and sent >= len(views[first]):
                sent -= len(views[first])
                first += 1
            if sent:
                views[first] = views[first][sent:]

    def close_gently(self) -> None:
        """Half-close, then read and drop what the client still sends until it closes (for at
        most LINGER seconds and LINGER_BYTES), so that the close does not reset the connection
        before the client has read the answer (Go's rstAvoidanceDelay)."""
        self.read_by = time.monotonic() + LINGER
        scratch = bytearray(16 * 1024)
        try:
            self.sock.shutdown(socket.SHUT_WR)
            for _ in range(LINGER_BYTES // len(scratch)):
                if not self.recv_into(scratch):
                    return
        except OSError:  # a reset, the deadline: the socket closes anyway
            return

    def _send_all(self, view: memoryview) -> None:
        while view:
            self._wait_until(self.write_by)
            view = view[self.sock.send(view) :]

    def _wait_until(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline has passed")
        self.sock.settimeout(None if math.isinf(left) else left)


class _Reader(io.RawIOBase):
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "WriteableBuffer") -> int:
        return self._connection.recv_into(buffer)


class _Writer(io.BufferedIOBase):
    """Every write sent whole before it returns (headers, and the standard library's error
    answers)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def writable(self) -> bool:
        return True

    def write(self, data: "ReadableBuffer") -> int:
        piece = bytes(data)
        self._connection.write_pieces([piece])
        return len(piece)


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
