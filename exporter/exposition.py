"""The /metrics body: per-function families rendered in the background, self-metrics kept fresh.

The per-function part can be large (10,000 functions with execution histograms: 26 MB). A
renderer thread re-renders it when the state has changed, at most once per `MIN_RENDER_GAP`
seconds, never on the scrape path: a scrape sends the latest render from memory, so scrapes
stay fast whatever Mudbase or the state does.

A render is a list of chunks (see `FunctionRenderer.render_parts`); each chunk is compressed
apart into a deflate segment, kept for as long as the chunk is made of the same pieces, so a
render after a poll compresses only the chunks of the functions that changed. A gzip answer is
these segments and the self-metrics' in one gzip member (see `gzipstream`). A plain answer is
the cached pieces in order, never joined into one copy, so concurrent scrapes cost no memory per
scrape beyond the small self-metrics.

The renderer thread also collects the exporter's own metrics every `SELF_METRICS_REFRESH`
seconds (prometheus_client's `generate_latest`) and compresses them, so a scrape sends them
from memory too; a scrape collects them itself only when the kept collection is older than
`SELF_METRICS_MAX_AGE`, or a reload changed them since (`self_metrics_changed`). A collection
that began before such a change is never kept, so the next scrape always shows what the reload
answered.
"""

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

from exporter import gzipstream
from exporter.gzipstream import Chunk, SegmentCache

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MIN_RENDER_GAP = 1.0
# Collecting the ~150 self-metric samples costs about 1 ms after a second of idling (cold
# caches): at Prometheus' pace, on the scrape path, that was half of a gzip scrape's time.
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


@dataclass(frozen=True)
class _SelfMetrics:
    """One collection of the exporter's own metrics: their text and its deflate segment, when
    it was collected (monotonic time) and which version of them it shows."""

    text: bytes
    segment: bytes
    collected_at: float
    version: int


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
        self._live = live
        self._segments = segments or SegmentCache()
        self._gap = min_render_gap
        self._on_error = on_error
        self._lock = threading.Lock()
        self._current: _Rendered | None = None
        # The oldest state generation /metrics does not show, and since when (monotonic time).
        self._unshown: tuple[int, float] | None = None
        self._unshown_lock = threading.Lock()
        self._self_metrics: _SelfMetrics | None = None
        self._self_version = 0  # bumped when the self-metrics changed in a way to show at once
        self._self_lock = threading.Lock()
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
        """The state changed: the renderer will pick it up. The first generation not shown yet
        starts the clock of `unrendered_for` (a call with no new generation starts nothing)."""
        with self._unshown_lock:
            generation = self._generation()
            if self._unshown is None and generation > self.rendered_generation():
                self._unshown = (generation, time.monotonic())
        self._changed.set()

    def unrendered_for(self) -> float:
        """Seconds since the oldest change of the state that /metrics does not show yet."""
        unshown = self._unshown
        return 0.0 if unshown is None else time.monotonic() - unshown[1]

    def self_metrics_changed(self) -> None:
        """The self-metrics changed in a way the next scrape must show (a reload): that scrape
        collects them, and no collection that began before this call is kept."""
        with self._self_lock:
            self._self_version += 1

    def pieces(self, gzipped: bool = False) -> list[bytes]:
        """The complete body, as pieces to write one after the other (never joined): the
        per-function part and the self-metrics, plain or as one gzip member. Raises when there
        is no body to send: the first render, or the self-metrics' collection, failed."""
        rendered = self._latest()
        own = self._own_metrics()
        if not gzipped:
            return [*rendered.pieces, own.text]
        crc, length = gzipstream.checksum([own.text], rendered.crc)
        trailer = gzipstream.trailer(crc, rendered.length + length)
        return [gzipstream.HEADER, rendered.deflated, own.segment, trailer]

    def body(self, gzipped: bool = False) -> bytes:
        return b"".join(self.pieces(gzipped))

    def _own_metrics(self) -> _SelfMetrics:
        """The renderer's latest collection of the self-metrics if recent and current, else
        one made now."""
        kept = self._self_metrics
        if (
            kept is not None
            and kept.version == self._self_version
            and time.monotonic() - kept.collected_at <= SELF_METRICS_MAX_AGE
        ):
            return kept
        return self._collect_self_metrics()

    def _collect_self_metrics(self) -> _SelfMetrics:
        """Collect the self-metrics; kept for later scrapes unless they changed meanwhile."""
        version = self._self_version
        text = generate_latest(self._live)
        collected = _SelfMetrics(text, gzipstream.segment([text]), time.monotonic(), version)
        with self._self_lock:
            if version == self._self_version:
                self._self_metrics = collected
        return collected

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
                read_at, generation = time.monotonic(), self._generation()
                current = self._rendered(generation)
                self._current = current
                self._shown(generation, read_at)
                self.last_render_time = time.time()
                _trim_memory()
            return current

    def _shown(self, generation: int, read_at: float) -> None:
        """/metrics shows `generation` now, which was read at `read_at`: the oldest change it
        does not show, if any, is a later one, made after that read."""
        with self._unshown_lock:
            unshown = self._unshown
            if unshown is not None and unshown[0] <= generation:
                later = self._generation() > generation
                self._unshown = (generation + 1, read_at) if later else None

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
            if changed:  # never after a timeout: a change told just then would be lost
                self._changed.clear()
            try:
                if changed:
                    self._render()
                self._collect_self_metrics()
            except Exception as err:  # a bug: /metrics keeps the last render, health says so
                self._on_error(err)
                self._changed.set()  # try again after the gap
            if changed:  # at most one render per gap, however busy the state
                self._stopped.wait(self._gap)
