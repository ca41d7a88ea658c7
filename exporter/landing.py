"""The status page at `/`: what an operator keeps open beside the dashboards.

Server-rendered from one state snapshot, no JavaScript. Every function is ranked worst first
(failing polls, then stale data, then not polled yet, then the lowest success ratio: the recent
one, from the executions counted in the last 15 minutes, where there is one, else Mudbase's
lifetime ratio); a function's latest failed execution (error class, trigger, when) is shown
beside the last error of its polling, and how many of the executions Mudbase reported were
counted (the coverage of the execution metrics) above the table. One page
shows `PAGE_SIZE` of them, filtered by `?q=` (a substring of project/function or name) and
paged by `?page=`. The ranking (statuses, order, summary counts) is kept for as long as the
state's generation and the interval stay the same and no function has turned stale since, so
a view renders its rows only, however often the page reloads itself in however many tabs. The
request budget, the effective interval and a 429 pause come from the planner. Everything taken
from the config, Mudbase or the query string is HTML-escaped; error details are redacted of
known secrets; the Mudbase URL is shown without user info.
"""

import math
import platform
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from html import escape
from urllib.parse import parse_qs, urlencode

from exporter import __version__
from exporter.config import public_url
from exporter.durations import format_duration
from exporter.failures import RECENT_WINDOW, RecentRatio
from exporter.logs import REDACTOR
from exporter.planner import Plan
from exporter.state import StateStore, TargetState

PAGE_SIZE = 100
MAX_FILTER_CHARS = 200
MAX_PAGE = 100_000
DETAIL_CHARS = 300  # an error's detail is cut to this length on the page
STALE_INTERVALS = 3  # data older than this many effective intervals is stale
REFRESH_BOUNDS = (5, 60)  # seconds: the page reloads every interval, within these bounds
RERANK_AFTER = 60.0  # seconds: the recent ratios slide with time, the ranking follows
DOCS_URL = "https://github.com/mudbase/mudbase-exporter/blob/main/docs/operations.md"
_UNKNOWN_RATIO = 2.0  # sorts after every real ratio

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1f2328}
h1{font-size:1.4em;margin:0 0 .3em}p{margin:.3em 0}
table{border-collapse:collapse;margin-top:.8em;width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 6px;border-radius:8px;color:#fff;font-size:.85em}
.failing{background:#cf222e}.stale{background:#bc4c00}.pending{background:#9a6700}
.up{background:#1a7f37}.bad{color:#cf222e;font-weight:600}.muted{color:#656d76}
.detail{font-family:ui-monospace,monospace;font-size:.85em;word-break:break-all}
nav a{margin-right:1em}form{margin:.8em 0 0}
"""


class QueryError(ValueError):
    """A query string the page does not accept; the message says why."""


class Status(IntEnum):
    """A function's health on the page, worst first."""

    FAILING = 0  # its last poll failed
    STALE = 1  # polled, but its last success is older than STALE_INTERVALS intervals
    PENDING = 2  # not polled yet
    UP = 3


@dataclass(frozen=True)
class PageRequest:
    """What the query string asks for: a filter and a 1-based page."""

    q: str = ""
    page: int = 1


@dataclass(frozen=True)
class Overview:
    """What the page shows beside the functions: the planner's plan, the Mudbase URL, and the
    Unix time at which a 429 pause of every request ends (None: no pause)."""

    plan: Plan
    mudbase_url: str
    paused_until: float | None = None


@dataclass
class _Ranking:
    """Every function worst first with its status, how many have each status, and what the
    ranking holds for: the state's generation and the interval it was worked out for, and the
    span of time in which no function's status changes on its own (until the next one turns
    stale)."""

    generation: int
    interval: float
    since: float
    until: float
    states: list[TargetState]
    statuses: list[Status]
    counts: dict[Status, int]
    recent: dict[int, RecentRatio]  # by place in `states`: functions with executions counted
    coverage: tuple[int, int]  # executions counted, and those no logs answer held (the store)
    _texts: list[str] | None = None  # what the filter searches, made for the first filter

    def holds(self, generation: int, interval: float, now: float) -> bool:
        return (generation, interval) == (self.generation, self.interval) and (
            self.since <= now <= self.until
        )

    def matching(self, q: str) -> Sequence[int]:
        """The places of the functions whose project/function or name holds `q`
        (case-insensitive), in order."""
        needle = q.casefold()
        if not needle:
            return range(len(self.states))
        if self._texts is None:
            self._texts = [_searchable(state) for state in self.states]
        return [place for place, text in enumerate(self._texts) if needle in text]


def parse_query(query: str) -> PageRequest:
    """`q` (at most 200 printable characters) and `page` (a positive integer); others ignored."""
    try:
        params = parse_qs(query, keep_blank_values=True, max_num_fields=20)
    except ValueError as err:
        raise QueryError(f"invalid query string: {err}") from None
    for name in ("q", "page"):
        if len(params.get(name, ())) > 1:
            raise QueryError(f"{name}: given more than once")
    text = params.get("q", [""])[0].strip()
    if len(text) > MAX_FILTER_CHARS or not text.isprintable():
        raise QueryError(f"q: at most {MAX_FILTER_CHARS} printable characters")
    page = params.get("page", ["1"])[0]
    if not (page.isascii() and page.isdigit()) or not 1 <= int(page) <= MAX_PAGE:
        raise QueryError(f"page: a whole number from 1 to {MAX_PAGE}")
    return PageRequest(text, int(page))


def status_of(state: TargetState, now: float, interval: float) -> Status:
    if state.up is None:
        return Status.PENDING
    if not state.up:
        return Status.FAILING
    if state.last_success is None or now - state.last_success > STALE_INTERVALS * interval:
        return Status.STALE
    return Status.UP


def _ratio(state: TargetState) -> float | None:
    return state.stats.success_ratio if state.stats else None


def _recent(state: TargetState, now: float) -> RecentRatio | None:
    """The function's recent ratio, if it had executions counted in the recent window."""
    if state.executions is None or not state.executions.failures.recent:
        return None
    recent = state.executions.failures.recent_ratio(now)
    return recent if recent.executions else None


def _ratio_ranks(
    targets: Iterable[TargetState], now: float
) -> tuple[dict[int, float], dict[int, RecentRatio]]:
    """Each function's rank among its status, by the id of its snapshot: its recent ratio
    where it has one, else its lifetime ratio, else after every ratio; and the recent ratios."""
    ranks, recents = {}, {}
    for state in targets:
        recent = _recent(state, now)
        if recent is not None:
            recents[id(state)] = recent
            ratio = recent.ratio
        else:
            ratio = _ratio(state)
        ranks[id(state)] = _UNKNOWN_RATIO if ratio is None else ratio
    return ranks, recents


def _searchable(state: TargetState) -> str:
    name = state.info.name if state.info else ""
    return f"{state.key.project}/{state.key.function}\n{name}".casefold()


def _ranking(
    targets: Iterable[TargetState],
    generation: int,
    interval: float,
    now: float,
    coverage: tuple[int, int] = (0, 0),
) -> _Ranking:
    """The functions (in the snapshot's order, by project and function) worst first: by
    status, failing ones by their failures in a row, then by the lowest success ratio (recent,
    else lifetime). Sorted apart per status with keys that make no new objects: at 50,000
    functions a tuple per function (and the garbage collections it set off) cost most of a
    ranking."""
    targets = list(targets)
    ranks, recents = _ratio_ranks(targets, now)
    by_status: dict[Status, list[TargetState]] = {status: [] for status in Status}
    for state in targets:
        by_status[status_of(state, now, interval)].append(state)
    failing = by_status[Status.FAILING]  # sorts are stable: ties stay in order
    failing.sort(key=lambda s: ranks[id(s)])
    failing.sort(key=lambda s: -s.consecutive_failures)
    for status in (Status.STALE, Status.PENDING, Status.UP):
        by_status[status].sort(key=lambda s: ranks[id(s)])
    up = by_status[Status.UP]  # each has a last success; the oldest turns stale first
    until = min((s.last_success or 0.0 for s in up), default=math.inf) + STALE_INTERVALS * interval
    states = [state for status in Status for state in by_status[status]]
    statuses = [status for status in Status for _ in by_status[status]]
    counts = {status: len(group) for status, group in by_status.items()}
    recent = {place: recents[id(s)] for place, s in enumerate(states) if id(s) in recents}
    until = min(until, now + RERANK_AFTER)
    return _Ranking(generation, interval, now, until, states, statuses, counts, recent, coverage)


# -- cells ---------------------------------------------------------------------------------


def _age(seconds: float) -> str:
    seconds = max(0, round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return '<span class="muted">never</span>'
    moment = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'<span title="{moment}">{_age(now - timestamp)}</span>'


def _percent(ratio: float | None, objective: float) -> str:
    if ratio is None:
        return '<span class="muted">&ndash;</span>'
    css = ' class="bad"' if ratio < objective else ""
    return f'<span{css} title="objective {objective:.2%}">{ratio:.2%}</span>'


def _count(value: int | None) -> str:
    return "&ndash;" if value is None else f"{value:,}"


def _executions(state: TargetState) -> str:
    stats = state.stats
    if stats is None or stats.total_executions is None:
        return '<span class="muted">&ndash;</span>'
    failed = stats.failed_executions
    suffix = f' <span class="muted">({failed:,} failed)</span>' if failed else ""
    return f"{stats.total_executions:,}{suffix}"


def _seconds(value: float | None) -> str:
    if value is None:
        return '<span class="muted">&ndash;</span>'
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _error(state: TargetState, now: float) -> str:
    if state.last_error_reason is None:
        return ""
    detail = REDACTOR.redact(state.last_error_detail or "")
    shown = escape(detail[:DETAIL_CHARS]) + ("&hellip;" if len(detail) > DETAIL_CHARS else "")
    text = f"<b>{escape(state.last_error_reason)}</b> {_when(state.last_error_time, now)}"
    return text + (f'<br><span class="detail">{shown}</span>' if detail else "")


def _recent_cell(recent: RecentRatio | None, objective: float) -> str:
    if recent is None:
        return '<span class="muted">&ndash;</span>'
    return (
        f'{_percent(recent.ratio, objective)} <span class="muted">of {recent.executions:,}</span>'
    )


def _failure(state: TargetState, now: float) -> str:
    """The newest failed execution seen: its error class (redacted when folded, again here;
    its own class, not `other`: the page has no bound on label values), trigger and invoker,
    and when."""
    latest = state.executions.failures.latest if state.executions is not None else None
    if latest is None:
        return ""
    error = escape(REDACTOR.redact(latest.folded or latest.error_class))
    how = escape(f"{latest.trigger_type}, {latest.invoked_by}")
    return f'<span class="detail">{error}</span><br>{how} {_when(latest.at, now)}'


def _function(state: TargetState) -> str:
    name = state.info.name if state.info else ""
    cell = escape(state.key.function)
    if name and name != state.key.function:
        cell += f'<br><span class="muted">{escape(name)}</span>'
    return cell


def _row(state: TargetState, status: Status, recent: RecentRatio | None, now: float) -> str:
    stats = state.stats
    failures = state.consecutive_failures
    health = status.name.lower()
    if status is Status.FAILING and failures > 1:
        health += f" &times;{failures}"
    cells = (
        f'<span class="badge {status.name.lower()}">{health}</span>',
        escape(state.key.project),
        _function(state),
        _recent_cell(recent, state.settings.slo_objective),
        _percent(_ratio(state), state.settings.slo_objective),
        _executions(state),
        _seconds(stats.avg_execution_seconds if stats else None),
        _when(stats.last_run_timestamp if stats else None, now),
        _when(state.last_success, now),
        _failure(state, now),
        _error(state, now),
    )
    numeric = {3, 4, 5, 6}
    return (
        "<tr>"
        + "".join(
            f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(cells)
        )
        + "</tr>"
    )


# -- the page ------------------------------------------------------------------------------


def _summary(counts: dict[Status, int]) -> str:
    parts = [
        f"<b>{counts[Status.UP]:,}</b> up",
        f'<b class="{"bad" if counts[Status.FAILING] else ""}">{counts[Status.FAILING]:,}</b> '
        "failing",
        f"<b>{counts[Status.STALE]:,}</b> stale",
        f"<b>{counts[Status.PENDING]:,}</b> not polled yet",
    ]
    return f"{sum(counts.values()):,} functions: " + ", ".join(parts) + "."


def _pause(paused_until: float | None, now: float) -> str:
    """The 429 pause every request shares, if one is on: once, for the whole page."""
    if paused_until is None or paused_until <= now:
        return ""
    moment = datetime.fromtimestamp(paused_until, UTC).strftime("%H:%M:%S")
    left = math.ceil(paused_until - now)
    return (
        '<p id="paused" class="bad">Mudbase rate-limited the exporter: every request paused '
        f"until {moment} UTC ({left} s left)</p>\n"
    )


def _budget(plan: Plan) -> str:
    per_kind = plan.per_15m()
    planned = sum(per_kind.values())
    kinds = ", ".join(f"{kind.value} {count:,.0f}" for kind, count in per_kind.items())
    interval = format_duration(round(plan.interval, 1))
    line = (
        f"Request budget: <b>{planned:,.0f}</b> of {plan.budget:,.0f} requests per 15 minutes "
        f"planned ({kinds}; logs at most). Every function is polled every <b>{interval}</b>"
    )
    if plan.stretched:
        configured = format_duration(round(plan.configured_interval, 1))
        line += f' <span class="bad">(configured {configured}, stretched to fit the budget)</span>'
    return line + "."


def _coverage_line(observed: int, unobserved: int) -> str:
    """How many of the executions Mudbase reported were counted from logs answers: the share
    behind the execution metrics and the recent ratios."""
    reported = observed + unobserved
    if not reported:
        return "Executions counted from logs answers: none reported yet."
    return (
        f"Executions counted from logs answers: <b>{observed / reported:.1%}</b> "
        f"({observed:,} of the {reported:,} Mudbase reported since the exporter started; "
        "the rest were never on a fetched logs page)."
    )


def _link(request: PageRequest, page: int) -> str:
    params = {"q": request.q} if request.q else {}
    return "?" + urlencode({**params, "page": page})


def _pager(request: PageRequest, shown: int, total: int, everything: int) -> str:
    pages = max(1, -(-total // PAGE_SIZE))
    first = (request.page - 1) * PAGE_SIZE
    text = (
        f"Showing {first + 1:,}&ndash;{first + shown:,} of {total:,}"
        if shown
        else f"None of {total:,}"
    )
    if request.q:
        text += f" matching &ldquo;{escape(request.q)}&rdquo; (of {everything:,})"
    links = []
    if request.page > 1:
        links.append(
            f'<a href="{escape(_link(request, min(request.page - 1, pages)))}">&larr; worse</a>'
        )
    if request.page < pages:
        links.append(f'<a href="{escape(_link(request, request.page + 1))}">better &rarr;</a>')
    return f"<p>{text}; page {request.page:,} of {pages:,}. {' '.join(links)}</p>"


def _refresh(plan: Plan) -> int:
    low, high = REFRESH_BOUNDS
    return int(min(max(plan.interval, low), high))


_COLUMNS = (
    "Health",
    "Project",
    "Function",
    f"Recent ({format_duration(RECENT_WINDOW)})",
    "Success ratio",
    "Executions",
    "Avg time",
    "Last run",
    "Last success",
    "Latest failure",
    "Last poll error",
)


class StatusPage:
    """The status page of a state store. Its ranking of every function is kept while it holds
    (see `_Ranking`): a view ranks nothing then, it renders its rows."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._lock = threading.Lock()  # concurrent views of a new state rank it once
        self._ranking: _Ranking | None = None

    def render(self, query: str, overview: Overview, now: float | None = None) -> bytes:
        """The page for this query string; QueryError if it is not valid."""
        request = parse_query(query)
        now = time.time() if now is None else now
        return _page(request, self._ranked(overview.plan.interval, now), overview, now)

    def _ranked(self, interval: float, now: float) -> _Ranking:
        generation = self._state.generation  # read before the snapshot: never newer than it
        ranking = self._ranking
        if ranking is not None and ranking.holds(generation, interval, now):
            return ranking
        with self._lock:
            ranking = self._ranking
            if ranking is None or not ranking.holds(generation, interval, now):
                targets = self._state.snapshot().values()
                coverage = self._state.execution_coverage()
                ranking = _ranking(targets, generation, interval, now, coverage)
                self._ranking = ranking
            return ranking


def _page(request: PageRequest, ranking: _Ranking, overview: Overview, now: float) -> bytes:
    plan = overview.plan
    rows = ranking.matching(request.q)
    shown = rows[(request.page - 1) * PAGE_SIZE : request.page * PAGE_SIZE]
    body = "\n".join(
        _row(ranking.states[i], ranking.statuses[i], ranking.recent.get(i), now) for i in shown
    )
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta http-equiv="refresh" content="{_refresh(plan)}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Mudbase Exporter</title><style>{_STYLE}</style></head>
<body><h1>Mudbase Exporter</h1>
{_pause(overview.paused_until, now)}<p id="summary">{_summary(ranking.counts)}</p>
<p id="budget">{_budget(plan)}</p>
<p id="coverage">{_coverage_line(*ranking.coverage)}</p>
<p class="muted">Version {escape(__version__)} on Python {escape(platform.python_version())};
Mudbase at <code>{escape(public_url(overview.mudbase_url))}</code>. This page reloads every
{_refresh(plan)} s.</p>
<nav><a href="/metrics">Metrics</a><a href="/-/healthy">Health</a><a href="/-/ready">Readiness</a>
<a href="{DOCS_URL}">Documentation</a></nav>
<form method="get" action="/"><input name="q" value="{escape(request.q)}" size="40"
maxlength="{MAX_FILTER_CHARS}" placeholder="filter by project or function">
<button type="submit">Filter</button></form>
{_pager(request, len(shown), len(rows), len(ranking.states))}
<table><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table></body></html>
"""
    return html.encode("utf-8")
