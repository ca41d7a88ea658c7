"""Which optional logs requests go first: the functions whose failures rose.

A discovered function's logs are fetched only when the budget leaves room, so the order of the
due ones decides who waits: functions whose failed count rose since their logs were last
fetched (or since they were first listed) go first, most new failures first; then functions
whose stats changed otherwise; then the rest (due because their logs are old). Within each
group, the one fetched longest ago first. Pure functions, no state: the poller sorts with them.
"""

from exporter.upstream import FunctionStats

Fingerprint = tuple[int | None, int | None, float | None]  # total, failed, last run
Priority = tuple[int, int, float]  # group, minus new failures, when the logs were last fetched

FAILING, CHANGED, OLD = 0, 1, 2


def fingerprint(stats: FunctionStats) -> Fingerprint:
    """What tells that a function ran since the last look: its counts and last run."""
    return (stats.total_executions, stats.failed_executions, stats.last_run_timestamp)


def new_failures(seen: Fingerprint | None, stats: FunctionStats) -> int:
    """Failures Mudbase counted since `seen` (0 when unknown, or when the count shrank)."""
    before = seen[1] if seen is not None else None
    now = stats.failed_executions
    if before is None or now is None:
        return 0
    return max(0, now - before)


def logs_priority(seen: Fingerprint | None, stats: FunctionStats, fetched_at: float) -> Priority:
    """The sort key of a due function: lower goes first. `seen` is its fingerprint when its
    logs were last fetched (or when it was first listed), `fetched_at` when that was
    (-inf: never)."""
    failures = new_failures(seen, stats)
    if failures:
        return FAILING, -failures, fetched_at
    if seen != fingerprint(stats):
        return CHANGED, 0, fetched_at
    return OLD, 0, fetched_at
