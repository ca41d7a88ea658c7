"""The /metrics body: per-function families rendered once per state change, self-metrics live.

The per-function part can be large (thousands of functions); it is rendered only when the state
changed since the last scrape, and served from memory (plain and gzipped) in between. The small
self-metrics part (process, poll counters, budget) is rendered on every scrape, so it is never
stale. Gzip answers are two gzip members back to back, which every gzip reader accepts (RFC 1952,
and Go's reader in Prometheus reads multistream by default).
"""

import gzip
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
GZIP_LEVEL = 6


@dataclass
class _Rendered:
    generation: int
    body: bytes
    _gzipped: bytes | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def gzipped(self) -> bytes:
        with self._lock:
            if self._gzipped is None:
                self._gzipped = gzip.compress(self.body, compresslevel=GZIP_LEVEL)
            return self._gzipped


class CachedExposition:
    def __init__(
        self,
        functions: CollectorRegistry,
        generation: Callable[[], int],
        live: CollectorRegistry,
    ) -> None:
        self._functions = functions
        self._generation = generation
        self._live = live
        self._lock = threading.Lock()
        self._current: _Rendered | None = None

    def body(self, gzipped: bool = False) -> bytes:
        cached = self._cached()
        live = generate_latest(self._live)
        if gzipped:
            return cached.gzipped() + gzip.compress(live, compresslevel=GZIP_LEVEL)
        return cached.body + live

    def _cached(self) -> _Rendered:
        generation = self._generation()
        current = self._current
        if current is not None and current.generation == generation:
            return current
        with self._lock:  # concurrent scrapes share one render
            current = self._current
            if current is None or current.generation != generation:
                current = _Rendered(generation, generate_latest(self._functions))
                self._current = current
            return current
