"""Execution-level totals: which executions of a logs answer are new, and what they add up to.

Mudbase lists executions newest first, and offset paging drifts while executions arrive.
Per function, a cursor (the newest `executedAt` counted, and the IDs counted at
that instant) tells new executions from ones already counted, in constant memory. The totals
are immutable snapshots kept in the state store beside the stats; the collector turns them into
counters and a histogram. Nothing here does I/O.

The first logs answer of a function (a full page, one request) places the cursor: the counters
count executions observed from then on, as a counter should; its failures are not counted, but
its newest one is known at once (`exporter.failures`). Executions the stats say happened but
that were not seen (more new executions than the pages fetched per poll hold) are counted as
unobserved, so the histogram's coverage is visible.
"""

import bisect
import functools
import math
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from operator import itemgetter
from types import MappingProxyType

from exporter.failures import Failures
from exporter.upstream import Execution

# Label values are fixed sets: anything else Mudbase sends is `other`, a missing field `unknown`
# (outcome: success, failure or unknown).
TRIGGER_TYPES = ("document", "file", "http", "cron", "schedule", "webhook", "auth", "manual")
INVOKERS = ("trigger", "manual", "api_key", "cron")
OTHER, UNKNOWN = "other", "unknown"
OUTCOMES = ("success", "failure")  # each exported from 0 once its trigger/invoker pair is seen

# Serverless execution times: from a few milliseconds to a timed-out run of minutes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

PAGE_SIZE = 100  # the logs endpoint's maximum `limit`
FIRST_PAGE = PAGE_SIZE  # a function's first logs answer: its newest failure is likely on it
MIN_PAGE = 10  # the smallest page asked for once the cursor is placed
FUTURE_TOLERANCE = 600.0  # seconds
LOOKBACK = 900.0  # seconds behind the newest execution in which a late one is still counted
MAX_SEEN = 128  # executions kept in that window, per function
MAX_LAG = PAGE_SIZE  # executions seen before the stats count them (eventual consistency), kept

Kind = tuple[str, str, str]  # outcome, trigger_type, invoked_by


def kind_of(execution: Execution) -> Kind:
    return _kind(execution.success, execution.trigger_type, execution.invoked_by)


@functools.lru_cache(maxsize=256)  # a handful of combinations recur in every answer
def _kind(success: bool | None, trigger_type: str | None, invoked_by: str | None) -> Kind:
    outcome = UNKNOWN if success is None else ("success" if success else "failure")
    return outcome, _bounded(trigger_type, TRIGGER_TYPES), _bounded(invoked_by, INVOKERS)


def _with_both_outcomes(counts: Mapping[Kind, int], kinds: Iterable[Kind]) -> dict[Kind, int]:
    """`counts` with a 0 for each outcome of every trigger/invoker pair in `kinds` not counted
    yet: a function's failure counter exists, at 0, before its first failure, so that
    increase() sees that failure (it ignores a series' first sample)."""
    seeded = dict(counts)
    for _, trigger_type, invoked_by in kinds:
        for outcome in OUTCOMES:
            seeded.setdefault((outcome, trigger_type, invoked_by), 0)
    return seeded


def _bounded(value: str | None, allowed: tuple[str, ...]) -> str:
    if value is None or value == "":
        return UNKNOWN
    return value if value in allowed else OTHER


def page_limit(expected_new: int | None) -> int:
    """How many executions to ask for once the cursor is placed: what is expected, doubled, or
    a full page while the pace is unknown (the first poll after placing)."""
    if expected_new is None:
        return PAGE_SIZE
    return max(MIN_PAGE, min(PAGE_SIZE, 2 * expected_new + MIN_PAGE))


@dataclass(frozen=True, slots=True)
class Cursor:
    """What was counted: the executions seen in a lookback window behind the newest one.

    An execution is new if it is dated at or after `floor` and not among the seen ones. The
    window keeps at most `MAX_SEEN` executions of the last `LOOKBACK` seconds (hashes of their
    IDs and their times, oldest first: about 2 KB a function at most), so an execution that
    shows up after newer ones (dated by its start, it ran long or timed out) is counted once if
    it is inside the window; the floor rises past what leaves it, and anything older is only
    seen by the stats (unobserved).
    """

    floor: float  # Unix time: executions dated before it are not counted
    newest: float
    seen_at: "array[float]" = field(default_factory=lambda: array("d"))
    seen_ids: "array[int]" = field(default_factory=lambda: array("q"))

    @classmethod
    def placed_at(cls, executions: Iterable[Execution]) -> "Cursor":
        """The first answer: nothing before its newest execution is ever counted."""
        moved = cls(-math.inf, -math.inf).moved_to(executions)
        return replace(moved, floor=moved.newest)

    def raised_to(self, floor: float) -> "Cursor":
        """The cursor with executions dated before `floor` no longer counted (written off)."""
        if floor <= self.floor:
            return self
        kept = [(i, t) for i, t in zip(self.seen_ids, self.seen_at, strict=True) if t >= floor]
        return Cursor(
            floor,
            self.newest,
            array("d", (t for _, t in kept)),
            array("q", (i for i, _ in kept)),
        )

    def new_of(self, executions: Iterable[Execution]) -> list[Execution]:
        """The executions not counted yet (one comprehension comparing datetimes, no call per
        execution but the hash: it runs 100 times an answer)."""
        floor, horizon = _moment(self.floor), _moment(_horizon())
        seen = set(self.seen_ids)
        return [
            e
            for e in executions
            if (at := e.executed_at) is not None
            and floor <= at <= horizon
            and hash(e.id or repr(at)) not in seen
        ]

    def moved_to(self, executions: Iterable[Execution]) -> "Cursor":
        """The cursor once `executions` (new ones) are counted too."""
        floor, horizon, seen = self.floor, _horizon(), set(self.seen_ids)
        fresh = sorted(
            {
                identity: moment
                for e in executions
                if (at := e.executed_at) is not None
                and floor <= (moment := at.timestamp()) <= horizon
                and (identity := hash(e.id or repr(at))) not in seen
            }.items(),
            key=itemgetter(1),
        )
        if not fresh:
            return self
        kept = list(zip(self.seen_ids, self.seen_at, strict=True))
        if kept and fresh[0][1] < kept[-1][1]:  # a late arrival: not simply newer than all
            kept = sorted(kept + fresh, key=itemgetter(1))
        else:
            kept += fresh
        newest = max(self.newest, kept[-1][1])
        floor = max(floor, newest - LOOKBACK)
        if kept[0][1] < floor:
            kept = [entry for entry in kept if entry[1] >= floor]
        if len(kept) > MAX_SEEN:  # the window is full: the floor rises past what leaves it
            floor = max(floor, kept[-MAX_SEEN - 1][1] + 1e-6)  # a microsecond: datetimes' step
            kept = kept[-MAX_SEEN:]
        ids, times = zip(*kept, strict=True)
        return Cursor(floor, newest, array("d", times), array("q", ids))


def _horizon() -> float:
    """Executions dated further ahead than this are ignored (a clock gone wrong upstream): one
    would otherwise hold the cursor in the future and stop all counting until a restart."""
    return time.time() + FUTURE_TOLERANCE


def _moment(timestamp: float) -> datetime:
    if timestamp == -math.inf:
        return datetime.min.replace(tzinfo=UTC)
    return datetime.fromtimestamp(timestamp, UTC)


def _identity(execution: Execution) -> str:
    return execution.id if execution.id else repr(execution.executed_at)


_EMPTY_CURSOR = Cursor(-math.inf, -math.inf)
_NO_FAILURES = Failures()


@dataclass(frozen=True, slots=True)
class ExecutionTotals:
    """What one function's executions add up to since its cursor was placed."""

    cursor: Cursor = _EMPTY_CURSOR
    counts: Mapping[Kind, int] = field(default_factory=lambda: MappingProxyType({}))
    buckets: tuple[int, ...] = (0,) * (len(DURATION_BUCKETS) + 1)  # per bucket, +Inf last
    duration_sum: float = 0.0
    unobserved: int = 0
    last_total: int | None = None  # totalExecutions at the latest poll
    last_new: int | None = None  # new executions the stats reported at the latest poll (None:
    # not known yet, the cursor was just placed)
    debt: int = 0  # counted by the stats, not seen yet; negative while the stats lag
    placed: bool = True  # False: no logs answer yet, only listings (a discovered function)
    failures: Failures = _NO_FAILURES  # why it fails: every execution seen, first answer too
    listed_at: float | None = None  # Unix time of the latest listing that set last_total

    @classmethod
    def watching(cls, total: int | None) -> "ExecutionTotals":
        """A discovered function whose logs were not fetched yet: its listed total is where
        counting starts, so what it runs until its first logs answer shows as unobserved."""
        return cls(placed=False, last_total=total)

    def listed(self, total: int | None, at: float | None = None) -> "ExecutionTotals":
        """A listing's total (`at`: when it was listed, now by default). Before the first logs
        answer what it adds is unobserved at once. After it, what it adds waits one listing
        for a logs answer to count it; what an earlier listing added and no logs answer counted
        since is unobserved now, and the cursor's floor rises to that listing's time so that
        it is never counted twice. So the unobserved counter follows the stats listing by
        listing, not in one jump at the next logs answer, however late that comes."""
        at = time.time() if at is None else at
        if not self.placed:
            return replace(
                self,
                unobserved=self.unobserved + self._reported(total),
                last_total=self.last_total if total is None else total,
                listed_at=at,
            )
        reported, written_off = self._reported(total), max(0, self.debt)
        if not reported and not written_off:
            return self
        cursor = self.cursor
        if written_off and self.listed_at is not None:
            cursor = cursor.raised_to(self.listed_at)
        return replace(
            self,
            cursor=cursor,
            unobserved=self.unobserved + written_off,
            last_total=self.last_total if total is None else total,
            debt=min(0, self.debt) + reported,
            listed_at=at,
        )

    def place(self, executions: Sequence[Execution], total: int | None) -> "ExecutionTotals":
        """The first logs answer places the cursor; what the stats counted since the listing
        that started the watch (if any) was not observed."""
        return replace(
            self,
            cursor=Cursor.placed_at(executions),
            counts=MappingProxyType(_with_both_outcomes(self.counts, map(kind_of, executions))),
            placed=True,
            unobserved=self.unobserved + self._reported(total),
            last_total=self.last_total if total is None else total,
            failures=self.failures.seen(executions, kind_of, count=False),
        )

    def _reported(self, total: int | None) -> int:
        """Executions the stats added since the last total (none if it shrank)."""
        if total is None or self.last_total is None:
            return 0
        return max(0, total - self.last_total)

    def expected_new(self, total: int | None) -> int | None:
        """New executions the stats (e.g. from the function list) report since the last poll,
        else the last poll's pace; None while neither is known."""
        if total is None or self.last_total is None or total < self.last_total:
            return self.last_new
        return total - self.last_total + max(0, self.debt)  # and what listings left pending

    def advance(
        self, new: Sequence[Execution], total: int | None, fetched: Sequence[Execution] = ()
    ) -> "ExecutionTotals":
        """Count `new` (already de-duplicated), and account for what the stats saw beyond it.
        `fetched`: the executions of the answer's first page, counted or not, for the newest
        failure (one the listings wrote off as unobserved still says why it fails)."""
        reported = self._reported(total)  # none from a shrinking total (retention, recreation)
        debt = self.debt + reported - len(new)
        counts = Counter(self.counts)
        buckets = list(self.buckets)
        duration_sum = self.duration_sum
        for execution in new:
            counts[_kind(execution.success, execution.trigger_type, execution.invoked_by)] += 1
            if (seconds := execution.duration_seconds) is not None:
                buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
                duration_sum += seconds
        return ExecutionTotals(
            cursor=self.cursor.moved_to(new),
            counts=MappingProxyType(
                _with_both_outcomes(counts, counts.keys() - self.counts.keys())
            ),
            buckets=tuple(buckets),
            duration_sum=duration_sum,
            unobserved=self.unobserved + max(0, debt),
            last_total=total if total is not None else self.last_total,
            last_new=reported,
            debt=max(-MAX_LAG, min(0, debt)),
            failures=self.failures.seen(new, kind_of, count=True).newest(fetched, kind_of),
            listed_at=self.listed_at,
        )

    @property
    def observed(self) -> int:
        """Executions counted from logs answers, every kind."""
        return sum(self.counts.values())

    def new_executions(self) -> "NewExecutions":
        """Gathers the new executions of one poll's pages."""
        return NewExecutions(self.cursor)

    def cumulative_buckets(self) -> list[tuple[float, int]]:
        """(upper bound, executions at most that long), +Inf last, as a histogram exposes."""
        running, result = 0, []
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), self.buckets, strict=True):
            running += count
            result.append((bound, running))
        return result


class NewExecutions:
    """The new executions of one poll, gathered page by page (newest first).

    A page that shifted while new executions arrived repeats some of the previous page's:
    they are counted once. Paging can stop once a page reaches the cursor (it holds an
    execution counted before), or comes back short (the end of the list).
    """

    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor
        self._ids: set[str] = set()
        self.found: list[Execution] = []

    def add_page(self, executions: Sequence[Execution], limit: int) -> bool:
        """Take a page's new executions; True if an older page could hold more of them."""
        new = self._cursor.new_of(executions)
        for execution in new:
            identity = _identity(execution)
            if identity not in self._ids:
                self._ids.add(identity)
                self.found.append(execution)
        return len(new) == len(executions) == limit
