"""The /metrics body: per-function families rendered in the background, self-metrics live.

The per-function part can be large (10,000 functions with execution histograms: 24 MB). A
renderer thread re-renders it when the state has changed, at most once per `MIN_RENDER_GAP`
seconds, never on the scrape path: a scrape sends the latest render from memory (gzipped once
per render, on the first gzip scrape), so scrapes stay fast whatever Mudbase or the state does.
A render is kept as the renderer's cached pieces, joined per scrape, not as a second copy. The
small self-metrics part (process, poll counters, budget) is rendered on every scrape, so it is
never stale. Gzip answers are two gzip members back to back, which every gzip reader accepts
(RFC 1952; Go's reader in Prometheus reads multistream by default).
"""

import ctypes
import ctypes.util
import gzip
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

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


@dataclass
class _Rendered:
    """A render: the pieces of the per-function part, joined only into what a scrape sends (the
    pieces are the renderer's own cache, so no second copy of the text is kept)."""

    generation: int
    parts: Sequence[bytes]
    _gzipped: bytes | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def gzipped(self) -> bytes:
        """One gzip member, compressed on the first gzip scrape of this render."""
        with self._lock:
            if self._gzipped is None:
                compressor = zlib.compressobj(GZIP_LEVEL, wbits=GZIP_WBITS)
                chunks = [compressor.compress(part) for part in self.parts]
                self._gzipped = b"".join([*chunks, compressor.flush()])
            return self._gzipped


class CachedExposition:
    def __init__(
        self,
        functions: Callable[[], Sequence[bytes]],
        generation: Callable[[], int],
        live: CollectorRegistry,
        min_render_gap: float = MIN_RENDER_GAP,
        on_error: Callable[[Exception], None] = lambda error: None,
    ) -> None:
        self._functions = functions
        self._generation = generation
        self._live = live
        self._gap = min_render_gap
        self._on_error = on_error
        self._lock = threading.Lock()
        self._current: _Rendered | None = None
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

    def unrendered_for(self) -> float:
        """Seconds since the oldest change of the state that /metrics does not show yet."""
        since = self._unrendered_since
        return 0.0 if since is None else time.monotonic() - since

    def body(self, gzipped: bool = False) -> bytes:
        cached = self._latest()
        live = generate_latest(self._live)
        if gzipped:
            return cached.gzipped() + gzip.compress(live, compresslevel=GZIP_LEVEL)
        return b"".join([*cached.parts, live])

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
                    current = _Rendered(generation, self._functions())
                except Exception:
                    if pending is not None:  # still not shown: the oldest change counts
                        self._unrendered_since = pending
                    raise
                self._current = current
                self.last_render_time = time.time()
                _trim_memory()
            return current

    def _render_loop(self) -> None:
        while not self._stopped.is_set():
            self._changed.wait()
            self._changed.clear()
            if self._stopped.is_set():
                return
            try:
                self._render()
            except Exception as err:  # a bug: /metrics keeps the last render, health says so
                self._on_error(err)
                self._changed.set()  # try again after the gap
            self._stopped.wait(self._gap)  # at most one render per gap, however busy the state
