"""The /metrics body: per-function families rendered in the background, self-metrics live.

The per-function part can be large (10,000 functions with execution histograms: 26 MB). A
renderer thread re-renders it when the state has changed, at most once per `MIN_RENDER_GAP`
seconds, never on the scrape path: a scrape sends the latest render from memory, so scrapes
stay fast whatever Mudbase or the state does.

A render is a list of chunks (see `FunctionRenderer.render_parts`); each chunk is compressed
apart into a deflate segment, kept for as long as the chunk is made of the same pieces, so a
render after a poll compresses only the chunks of the functions that changed. A gzip answer
is these segments and the self-metrics' in one gzip member (see `gzipstream`). A plain answer
writes the cached pieces in order, never joined into one copy, so concurrent scrapes cost no
memory per scrape beyond the small self-metrics. Either is sent in two HTTP chunks: the
per-function part at once, then the self-metrics. The renderer thread also collects the
self-metrics every `SELF_METRICS_REFRESH` seconds (see `selftext`), so a scrape sends them
from memory too; they are at most `SELF_METRICS_MAX_AGE` old, or collected on the scrape.
"""

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry

from exporter import gzipstream
from exporter.gzipstream import Chunk, SegmentCache
from exporter.selftext import SelfMetricsText

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MIN_RENDER_GAP = 1.0
# Collecting the ~150 self-metric samples costs 0.25 ms back to back, about 1 ms after a second
# of idling (cold caches): at Prometheus' pace that was half of a gzip scrape's time.
SELF_METRICS_REFRESH = 1.0
SELF_METRICS_MAX_AGE = 1.5


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


@dataclass(frozen=True)
class _Rendered:
    """A render: the pieces of the per-function part (the renderer's own cache, so no second
    copy of the text is kept), its deflate segments joined, and the CRC-32 and length of its
    text, which the gzip trailer continues over the self-metrics."""

    generation: int
    pieces: tuple[bytes, ...]
    deflated: bytes
    crc: int
    length: int


class CachedExposition:
    def __init__(
        self,
        functions: Callable[[], Sequence[Chunk]],
        generation: Callable[[], int],
        live: CollectorRegistry,
        min_render_gap: float = MIN_RENDER_GAP,
        on_error: Callable[[Exception], None] = lambda error: None,
        *,
        segments: SegmentCache | None = None,
    ) -> None:
        self._functions = functions
        self._generation = generation
        self._live = SelfMetricsText(live)
        self._segments = segments or SegmentCache()
        self._gap = min_render_gap
        self._on_error = on_error
        self._lock = threading.Lock()
        self._current: _Rendered | None = None
        self._live_texts: tuple[float, list[bytes]] | None = None  # (monotonic time, texts)
        self._unrendered_since: float | None = None  # monotonic time of the oldest change
        self.last_render_time: float | None = None  # Unix time of the latest render
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
        if self._unrendered_since is None:
            self._unrendered_since = time.monotonic()
        self._changed.set()

    def self_metrics_changed(self) -> None:
        """The self-metrics changed in a way the next scrape must show (a reload): collect them
        on that scrape, not from the renderer's last collection."""
        self._live_texts = None

    def unrendered_for(self) -> float:
        """Seconds since the oldest change of the state that /metrics does not show yet."""
        since = self._unrendered_since
        return 0.0 if since is None else time.monotonic() - since

    def answer(self, gzipped: bool = False) -> tuple[list[bytes], Callable[[], list[bytes]]]:
        """What a scrape sends, in two parts: the per-function part, ready, and a function for
        the rest (the self-metrics, read when called), so a server can send the first part
        while it collects the rest. Pieces to write one after the other, never to join."""
        cached = self._latest()
        if not gzipped:
            return list(cached.pieces), self._self_metrics
        return [gzipstream.HEADER, cached.deflated], lambda: self._gzip_end(cached)

    def _self_metrics(self) -> list[bytes]:
        """The self-metrics' texts: the renderer's latest collection if recent, else now."""
        collected = self._live_texts
        if collected is not None and time.monotonic() - collected[0] <= SELF_METRICS_MAX_AGE:
            return collected[1]
        return self._live.texts()

    def _gzip_end(self, cached: _Rendered) -> list[bytes]:
        live = self._self_metrics()
        crc, length = gzipstream.checksum(live, cached.crc)
        return [self._live.segment(live), gzipstream.trailer(crc, cached.length + length)]

    def pieces(self, gzipped: bool = False) -> list[bytes]:
        first, rest = self.answer(gzipped)
        return [*first, *rest()]

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
                pending, self._unrendered_since = self._unrendered_since, None
                generation = self._generation()
                try:
                    current = self._rendered(generation)
                except Exception:
                    if pending is not None:  # still not shown: the oldest change counts
                        self._unrendered_since = pending
                    raise
                self._current = current
                self.last_render_time = time.time()
                _trim_memory()
            return current

    def _rendered(self, generation: int) -> _Rendered:
        """The functions' chunks: their pieces, and only the new chunks compressed."""
        chunks = self._functions()
        pieces = tuple(piece for chunk in chunks for piece in chunk)
        return _Rendered(generation, pieces, *self._segments.compressed(chunks))

    def _render_loop(self) -> None:
        while not self._stopped.is_set():
            changed = self._changed.wait(SELF_METRICS_REFRESH)
            if self._stopped.is_set():
                return
            self._changed.clear()
            try:
                if changed:
                    self._render()
                self._live_texts = (time.monotonic(), self._live.texts())
            except Exception as err:  # a bug: /metrics keeps the last render, health says so
                self._on_error(err)
                self._changed.set()  # try again after the gap
            if changed:  # at most one render per gap, however busy the state
                self._stopped.wait(self._gap)
