"""The /metrics body, rendered once per state change and served from memory between changes."""

import gzip
import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


@dataclass(frozen=True)
class Rendered:
    generation: int
    body: bytes
    _gzipped: list[bytes]

    def gzipped(self) -> bytes:
        if not self._gzipped:
            self._gzipped.append(gzip.compress(self.body, compresslevel=6))
        return self._gzipped[0]


class CachedExposition:
    """Renders the registry in the classic text format when `generation()` has moved."""

    def __init__(self, registry: CollectorRegistry, generation: Callable[[], int]) -> None:
        self._registry = registry
        self._generation = generation
        self._lock = threading.Lock()
        self._current: Rendered | None = None

    def get(self) -> Rendered:
        generation = self._generation()
        current = self._current
        if current is not None and current.generation == generation:
            return current
        with self._lock:  # concurrent scrapes share one render
            current = self._current
            if current is None or current.generation != generation:
                current = Rendered(generation, generate_latest(self._registry), [])
                self._current = current
            return current
