"""What the exporter knows about each function: immutable snapshots behind one lock.

The poller writes; the collector and the landing page read a consistent copy. Every write that
changes something bumps `generation`, so the HTTP layer can cache the rendered exposition until
something changes; a write that changes nothing (an unchanged listing, a poll whose result is
the one stored) keeps the very snapshot objects and the generation, so the renderer, which
knows an unchanged function by its object, redoes nothing.
"""

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from exporter.executions import ExecutionTotals
from exporter.targets import FunctionInfo, FunctionSettings, TargetKey
from exporter.upstream import FunctionStats

__all__ = ["FunctionSettings", "StateStore", "TargetKey", "TargetState"]
DEFAULT_SETTINGS = FunctionSettings(slo_objective=0.99)
# A discovered function leaves after this many complete listings in a row without it: offset
# paging drifts when functions are created or deleted during a listing, and isActive can flap.
ABSENT_LISTINGS_TO_REMOVE = 2


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
    last_error_detail: str | None = None  # the failure's message, for the landing page
    consecutive_failures: int = 0
    info: FunctionInfo | None = None  # from the list endpoint, for discovered functions
    executions: ExecutionTotals | None = None  # None: no logs answer with executions yet

    @property
    def polled(self) -> bool:
        return self.up is not None


class StateStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: dict[TargetKey, TargetState] = {}
        self._generation = 0
        self._listeners: list[Callable[[], None]] = []
        self._projects_expected: set[str] = set()
        self._projects_listed: set[str] = set()
        self._absent: dict[TargetKey, int] = {}  # discovered functions missing from listings
        self._observed = 0  # executions counted from logs answers, every function, ever
        self._unobserved = 0  # executions the stats reported that no logs answer held

    @property
    def generation(self) -> int:
        return self._generation

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener` (cheaply, under the lock) after every change."""
        self._listeners.append(listener)

    def _bump(self) -> None:
        self._generation += 1
        for listener in self._listeners:
            listener()

    def _store(self, updated: TargetState) -> bool:
        """Put `updated` in place of its function's snapshot, unless it equals it (the stored
        object is kept then); True if it changed. The caller bumps once for its writes."""
        current = self._targets.get(updated.key)
        if current == updated:
            return False
        self._targets[updated.key] = updated
        before = current.executions if current is not None else None
        if updated.executions is not before and updated.executions is not None:
            self._count_executions(before, updated.executions)
        return True

    def _count_executions(self, before: ExecutionTotals | None, after: ExecutionTotals) -> None:
        """The exporter-wide counts move by what one function's totals added."""
        self._observed += max(0, after.observed - (before.observed if before else 0))
        self._unobserved += max(0, after.unobserved - (before.unobserved if before else 0))

    def execution_coverage(self) -> tuple[int, int]:
        """Executions counted from logs answers, and those the stats reported that no logs
        answer held, over every function since the exporter started (removed ones included):
        counters, for the exporter-wide coverage."""
        with self._lock:
            return self._observed, self._unobserved

    def set_targets(
        self,
        targets: Iterable[TargetKey] | Mapping[TargetKey, FunctionSettings],
        discovered_projects: Iterable[str] = (),
    ) -> None:
        """Track exactly these targets, plus what was discovered in `discovered_projects`.

        New targets start empty; known ones keep their state (no gap in their series).
        """
        wanted = (
            targets if isinstance(targets, Mapping) else dict.fromkeys(targets, DEFAULT_SETTINGS)
        )
        projects = set(discovered_projects)
        with self._lock:
            kept = {k: s for k, s in self._targets.items() if k.project in projects}
            self._targets = {
                key: replace(
                    self._targets.get(key) or TargetState(key), settings=wanted[key], info=None
                )
                for key in wanted
            } | kept
            self._targets = dict(sorted(self._targets.items()))
            self._projects_expected = projects
            self._projects_listed &= projects
            self._absent = {k: n for k, n in self._absent.items() if k in self._targets}
            self._bump()

    def sync_project(
        self,
        project: str,
        found: Mapping[TargetKey, tuple[FunctionSettings, FunctionInfo]],
        *,
        complete: bool = True,
    ) -> list[TargetKey]:
        """A listing of a project: add its new functions; if it is `complete`, drop the ones
        missing from `ABSENT_LISTINGS_TO_REMOVE` complete listings in a row (one missing keeps
        its last values); a listing with pages missing says nothing of the absent ones. The
        removed keys."""
        with self._lock:
            gone = []
            absent = [k for k in self._targets if k.project == project and k not in found]
            for key in absent if complete else []:
                self._absent[key] = self._absent.get(key, 0) + 1
                if self._absent[key] >= ABSENT_LISTINGS_TO_REMOVE:
                    del self._targets[key], self._absent[key]
                    gone.append(key)
            added = changed = False
            for key, (settings, info) in found.items():
                self._absent.pop(key, None)
                current = self._targets.get(key)
                added = added or current is None
                updated = replace(current or TargetState(key), settings=settings, info=info)
                changed = self._store(updated) or changed
            if added:
                self._targets = dict(sorted(self._targets.items()))
            self._projects_listed.add(project)
            if changed or gone:
                self._bump()
            return gone

    def remove_discovered(self, key: TargetKey) -> bool:
        """A discovered function Mudbase says no longer exists (404): gone at once."""
        with self._lock:
            if key.project not in self._projects_expected or key not in self._targets:
                return False
            del self._targets[key]
            self._absent.pop(key, None)
            self._bump()
            return True

    def project_attempted(self, project: str) -> None:
        """A project's list failed: it counts as polled once, for readiness."""
        with self._lock:
            self._projects_listed.add(project)

    def count(self) -> int:
        with self._lock:
            return len(self._targets)

    def get(self, key: TargetKey) -> TargetState | None:
        with self._lock:
            return self._targets.get(key)

    def keys_of(self, project: str) -> list[TargetKey]:
        with self._lock:
            return [k for k in self._targets if k.project == project]

    def record_success(
        self,
        key: TargetKey,
        stats: FunctionStats,
        now: float,
        executions: ExecutionTotals | None = None,
    ) -> None:
        with self._lock:
            current = self._targets.get(key)
            if current is None:  # removed from the config while its poll was running
                return
            updated = replace(
                current,
                stats=stats,
                up=True,
                last_success=now,
                consecutive_failures=0,
                executions=executions or current.executions,
            )
            if self._store(updated):
                self._bump()

    def record_executions(
        self, key: TargetKey, executions: ExecutionTotals, replacing: ExecutionTotals | None
    ) -> bool:
        """New execution totals from a logs request (the stats came from the list), only if the
        stored totals are still `replacing`, the ones they were computed from: a late answer
        never overwrites newer counts (counters must not go down). False if it was stale."""
        with self._lock:
            current = self._targets.get(key)
            if current is None or current.executions is not replacing:
                return False
            if self._store(replace(current, executions=executions)):
                self._bump()
            return True

    def record_failure(
        self,
        key: TargetKey,
        reason: str,
        now: float,
        keep_values_for: float,
        drop_values: bool,
        *,
        detail: str | None = None,
        own_error: bool = True,
    ) -> TargetState | None:
        """Mark a failed poll. Values survive `keep_values_for` seconds, unless `drop_values`.
        A failure that is not the function's own (`own_error=False`: its poll was refused by a
        429 pause every request shares) leaves its last error as it was."""
        with self._lock:
            current = self._targets.get(key)
            if current is None:
                return None
            expired = current.last_success is None or now - current.last_success > keep_values_for
            updated = replace(
                current,
                stats=None if drop_values or expired else current.stats,
                up=False,
                consecutive_failures=current.consecutive_failures + 1,
            )
            if own_error:
                updated = replace(
                    updated, last_error_reason=reason, last_error_time=now, last_error_detail=detail
                )
            self._targets[key] = updated
            self._bump()
            return current

    def snapshot(self) -> Mapping[TargetKey, TargetState]:
        """A read-only copy, consistent across targets, sorted by project and function."""
        with self._lock:
            return MappingProxyType(dict(self._targets))

    def ready(self) -> bool:
        """True once every configured target has been polled at least once."""
        with self._lock:
            if self._projects_expected - self._projects_listed:
                return False
            targets = self._targets.values()
            return bool(targets or self._projects_expected) and all(s.polled for s in targets)
