"""The /metrics body: per-function families rendered in the background, self-metrics live.

The per-function part can be large (10,000 functions with execution histograms: 26 MB). A
renderer thread re-renders it when the state has changed, at most once per `MIN_RENDER_GAP`
seconds, never on the scrape path: a scrape sends the latest render from memory, so scrapes
stay fast whatever Mudbase or the state does.

A render is a list of chunks (see `FunctionRenderer.render_parts`); each chunk is compressed
as a gzip member of its own, kept for as long as the chunk is made of the same pieces, so a
render after a poll changed one project compresses only that project's chunks. A gzip answer
is these members back to back, then the self-metrics' member: valid gzip (RFC 1952), read by
Go's reader in Prometheus (multistream by default), curl and Python's `gzip`. A plain answer
writes the cached pieces in order, never joined into one copy, so concurrent scrapes cost no
memory per scrape beyond the small self-metrics. The self-metrics are rendered on every scrape
(never stale), family by family, re-rendering only the families whose samples changed.
"""

import ctypes
import ctypes.util
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
GZIP_LEVEL = 3  # 10,000 functions (28 MB): 35 ms to 1.1 MB; level 6 takes 94 ms for 0.99 MB
GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer, not a bare zlib stream
MIN_RENDER_GAP = 1.0


def _memory_trimmer() -> Callable[[], None]:
    """glibc keeps what a render freed (a body of megabytes, thousands of small pieces) in its
    arenas: at 10,000 functions RSS grew from 122 to 194 MB over ten renders without giving it
    back. malloc_trim(0) returns it to the OS in about 3 ms. Elsewhere (musl, macOS): nothing."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return lambda: None
    return lambda: trim(0)


_trim_memory = _memory_trimmer()


Chunk = Sequence[bytes]


def gzip_member(pieces: Chunk) -> bytes:
    """The pieces, in order, as one complete gzip member."""
    compressor = zlib.compressobj(GZIP_LEVEL, wbits=GZIP_WBITS)
    return b"".join([*(compressor.compress(piece) for piece in pieces), compressor.flush()])


class MemberCache:
    """Each chunk's gzip member, kept while a render uses the chunk. A chunk is known by the
    identities of its pieces: the entry holds the pieces, so no other object can take their
    ids while it lives."""

    def __init__(self, compress: Callable[[Chunk], bytes] = gzip_member) -> None:
        self._compress = compress
        self._members: dict[tuple[int, ...], tuple[Chunk, bytes]] = {}

    def members(self, chunks: Sequence[Chunk]) -> list[bytes]:
        """The members of this render's chunks, compressing only the new ones; the entries of
        chunks this render no longer has are dropped."""
        kept: dict[tuple[int, ...], tuple[Chunk, bytes]] = {}
        for chunk in chunks:
            key = tuple(map(id, chunk))
            entry = self._members.get(key) or kept.get(key) or (chunk, self._compress(chunk))
            kept[key] = entry
        self._members = kept
        return [kept[tuple(map(id, chunk))][1] for chunk in chunks]


@dataclass(frozen=True)
class _Rendered:
    """A render: the pieces of the per-function part (the renderer's own cache, so no second
    copy of the text is kept) and its gzip members joined into one body."""

    generation: int
    pieces: tuple[bytes, ...]
    gzipped: bytes


class _OneFamily(Collector):
    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


def _same_objects(old: Sequence[bytes], new: Sequence[bytes]) -> bool:
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))


class LivePart:
    """The self-metrics as text and as a gzip member, per scrape: each family is re-rendered
    (by prometheus_client, so the bytes are its own) only when its samples changed, and
    compressed again only when some family did."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._families: dict[str, tuple[Metric, bytes]] = {}
        self._member: tuple[list[bytes], bytes] = ([], b"")
        self.renders = 0  # families rendered, for tests

    def text(self) -> bytes:
        return b"".join(self._texts())

    def member(self) -> bytes:
        texts = self._texts()
        with self._lock:
            if not _same_objects(self._member[0], texts):
                self._member = (texts, gzip_member(texts))
            return self._member[1]

    def _texts(self) -> list[bytes]:
        families = list(self._registry.collect())
        with self._lock:
            cache = {family.name: self._text(family) for family in families}
            self._families = cache
            return [cache[family.name][1] for family in families]

    def _text(self, family: Metric) -> tuple[Metric, bytes]:
        cached = self._families.get(family.name)
        if cached is not None and cached[0] == family:  # name, help, type, unit and samples
            return cached
        self.renders += 1
        return family, generate_latest(_OneFamily(family))


class CachedExposition:
    def __init__(
        self,
        functions: Callable[[], Sequence[Chunk]],
        generation: Callable[[], int],
        live: CollectorRegistry,
        min_render_gap: float = MIN_RENDER_GAP,
        members: MemberCache | None = None,
    ) -> None:
        self._functions = functions
        self._generation = generation
        self._live = LivePart(live)
        self._members = members or MemberCache()
        self._gap = min_render_gap
        self._lock = threading.Lock()
        self._current: _Rendered | None = None
        self._changed = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Render in the background from now on (without it, scrapes render when needed)."""
        self._thread = threading.Thread(target=self._render_loop, name="render", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def rendered_generation(self) -> int:
        """The state generation /metrics shows now (-1 before the first render)."""
        current = self._current
        return current.generation if current is not None else -1

    def notify(self) -> None:
        """The state changed: the renderer will pick it up."""
        self._changed.set()

    def pieces(self, gzipped: bool = False) -> list[bytes]:
        """What a scrape sends, in order: to write one after the other, never to join."""
        cached = self._latest()
        if gzipped:
            return [cached.gzipped, self._live.member()]
        return [*cached.pieces, self._live.text()]

    def body(self, gzipped: bool = False) -> bytes:
        return b"".join(self.pieces(gzipped))

    def _latest(self) -> _Rendered:
        current = self._current
        if current is not None and (self._thread is not None or self._is_current(current)):
            return current
        return self._render()

    def _is_current(self, rendered: _Rendered) -> bool:
        return rendered.generation == self._generation()

    def _render(self) -> _Rendered:
        with self._lock:  # concurrent renders share one
            current = self._current
            if current is None or not self._is_current(current):
                generation = self._generation()
                chunks = self._functions()
                pieces = tuple(piece for chunk in chunks for piece in chunk)
                current = _Rendered(generation, pieces, b"".join(self._members.members(chunks)))
                self._current = current
                _trim_memory()
            return current

    def _render_loop(self) -> None:
        while not self._stopped.is_set():
            self._changed.wait()
            self._changed.clear()
            if self._stopped.is_set():
                return
            self._render()
            self._stopped.wait(self._gap)  # at most one render per gap, however busy the state
