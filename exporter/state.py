"""What the exporter knows about each function: immutable snapshots behind one lock.

The poller writes; the collector and the landing page read a consistent copy. Every write bumps
`generation`, so the HTTP layer can cache the rendered exposition until something changes.
"""

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from exporter.targets import FunctionSettings, TargetKey
from exporter.upstream import FunctionStats

__all__ = ["FunctionSettings", "StateStore", "TargetKey", "TargetState"]
DEFAULT_SETTINGS = FunctionSettings(slo_objective=0.99)


@dataclass(frozen=True)
class TargetState:
    """One function: its last known stats and the health of its polling."""

    key: TargetKey
    settings: FunctionSettings = DEFAULT_SETTINGS
    stats: FunctionStats | None = None
    up: bool | None = None  # None: not polled yet
    last_success: float | None = None
    last_error_reason: str | None = None
    last_error_time: float | None = None
    consecutive_failures: int = 0

    @property
    def polled(self) -> bool:
        return self.up is not None


class StateStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: dict[TargetKey, TargetState] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def set_targets(
        self, targets: Iterable[TargetKey] | Mapping[TargetKey, FunctionSettings]
    ) -> None:
        """Track exactly these targets: new ones start empty, known ones keep their state."""
        wanted = (
            targets if isinstance(targets, Mapping) else dict.fromkeys(targets, DEFAULT_SETTINGS)
        )
        with self._lock:
            self._targets = {
                key: replace(self._targets.get(key) or TargetState(key), settings=wanted[key])
                for key in sorted(wanted)
            }
            self._generation += 1

    def record_success(self, key: TargetKey, stats: FunctionStats, now: float) -> None:
        with self._lock:
            current = self._targets.get(key)
            if current is None:  # removed from the config while its poll was running
                return
            self._targets[key] = replace(
                current, stats=stats, up=True, last_success=now, consecutive_failures=0
            )
            self._generation += 1

    def record_failure(
        self, key: TargetKey, reason: str, now: float, keep_values_for: float, drop_values: bool
    ) -> TargetState | None:
        """Mark a failed poll. Values survive `keep_values_for` seconds, unless `drop_values`."""
        with self._lock:
            current = self._targets.get(key)
            if current is None:
                return None
            expired = current.last_success is None or now - current.last_success > keep_values_for
            updated = replace(
                current,
                stats=None if drop_values or expired else current.stats,
                up=False,
                last_error_reason=reason,
                last_error_time=now,
                consecutive_failures=current.consecutive_failures + 1,
            )
            self._targets[key] = updated
            self._generation += 1
            return current

    def snapshot(self) -> Mapping[TargetKey, TargetState]:
        """A read-only copy, consistent across targets, sorted by project and function."""
        with self._lock:
            return MappingProxyType(dict(self._targets))

    def ready(self) -> bool:
        """True once every configured target has been polled at least once."""
        with self._lock:
            targets = self._targets.values()
            return bool(targets) and all(state.polled for state in targets)

    def touch(self) -> None:
        """Mark a change outside the targets (a config reload) so /metrics re-renders."""
        with self._lock:
            self._generation += 1
