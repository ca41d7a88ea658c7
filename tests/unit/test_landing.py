"""The status page at `/`: escaping, worst-first order, filter, pagination, query validation."""

import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from exporter import landing
from exporter.executions import ExecutionTotals
from exporter.exposition import CachedExposition
from exporter.landing import (
    PAGE_SIZE,
    Overview,
    QueryError,
    Status,
    StatusPage,
    parse_query,
)
from exporter.logs import REDACTOR
from exporter.planner import Demand, make_plan
from exporter.state import StateStore, TargetKey, TargetState
from exporter.targets import FunctionInfo, FunctionSettings
from exporter.upstream import Execution, FunctionStats
from exporter.web import ExporterHTTPServer
from tests.helpers import http_get, serving_exporter

NOW = 10_000.0
PLAN = make_plan(Demand(listed=10), interval=30.0, budget=1600.0)
OVERVIEW = Overview(PLAN, "https://mudbase.example")
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def page(state: StateStore, query: str = "", overview: Overview = OVERVIEW) -> str:
    return StatusPage(state).render(query, overview, now=NOW).decode()


def stats(ratio: float | None, total: int = 100) -> FunctionStats:
    failed = None if ratio is None else round(total * (1 - ratio))
    return FunctionStats(
        total_executions=total,
        failed_executions=failed,
        success_ratio=ratio,
        avg_execution_seconds=0.25,
        last_run_timestamp=NOW - 30,
    )


def rows(html: str) -> list[str]:
    """Each row's project/function, in page order."""
    body = html.split("<tbody>", 1)[1]
    return [
        f"{project}/{function.split('<br>')[0]}"
        for project, function in re.findall(r"<tr><td>.*?</td><td>(.*?)</td><td>(.*?)</td>", body)
    ]


def test_hostile_names_errors_and_filter_are_escaped() -> None:
    state = StateStore()
    evil = TargetKey(HOSTILE, "f&g")
    named = TargetKey("p", "named")
    state.set_targets([evil, named])
    state.sync_project("p", {named: (FunctionSettings(0.99), FunctionInfo(HOSTILE, "http", True))})
    state.record_failure(
        evil, "forbidden", NOW - 5, keep_values_for=1, drop_values=False, detail=HOSTILE
    )
    state.record_success(named, stats(0.9), NOW - 1)
    html = page(state, "q=" + "%3Cscript%3E")
    assert "<script" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img" in html
    assert "f&amp;g" in html
    assert 'value="&lt;script&gt;"' in html  # the filter echoed in the form
    assert "matching &ldquo;&lt;script&gt;&rdquo;" in html
    assert "default-src 'none'" in html  # and nothing would run if something slipped through


def test_a_row_shows_the_numbers_and_the_last_error_detail() -> None:
    state = StateStore()
    key = TargetKey("shop", "checkout")
    state.set_targets([key])
    state.record_success(key, stats(0.85, total=1234), NOW - 2)
    state.record_failure(
        key, "timeout", NOW - 1, keep_values_for=60, drop_values=False, detail="read timed out"
    )
    html = page(state)
    row = html.split("<tbody>", 1)[1]
    assert '<span class="badge failing">failing</span>' in row
    assert 'class="bad" title="objective 99.00%">85.00%</span>' in row  # below its objective
    assert "1,234" in row
    assert "(185 failed)" in row
    assert "250 ms" in row
    assert "30s ago" in row  # last run
    assert "<b>timeout</b>" in row
    assert '<span class="detail">read timed out</span>' in row


def failed_once(reason: str, detail: str, at: float = NOW) -> StateStore:
    """A state of one function, p/f, whose poll failed once."""
    state = StateStore()
    key = TargetKey("p", "f")
    state.set_targets([key])
    state.record_failure(key, reason, at, keep_values_for=60, drop_values=False, detail=detail)
    return state


def test_error_details_are_redacted_and_cut() -> None:
    REDACTOR.add("tok-9f8e7d6c5b4a")
    html = page(failed_once("auth", "401 for token tok-9f8e7d6c5b4a " + "x" * 1000))
    assert "tok-9f8e7d6c5b4a" not in html
    assert "x" * 250 in html
    assert "x" * 400 not in html
    assert "&hellip;" in html


def test_worst_first_failing_then_stale_then_pending_then_lowest_ratio() -> None:
    state = StateStore()
    keys = {name: TargetKey("p", name) for name in "abcdefgh"}
    state.set_targets(keys.values())
    state.record_success(keys["a"], stats(1.0), NOW)
    state.record_success(keys["b"], stats(0.5), NOW)
    state.record_success(keys["c"], stats(None), NOW)
    state.record_success(keys["d"], stats(0.99), NOW - 3600)  # stale: an hour old
    for _ in range(3):
        state.record_failure(keys["e"], "timeout", NOW, keep_values_for=1, drop_values=False)
    state.record_failure(keys["f"], "timeout", NOW, keep_values_for=1, drop_values=False)
    state.record_success(keys["g"], stats(0.8), NOW)
    # h: not polled yet
    html = page(state)
    assert rows(html) == ["p/e", "p/f", "p/d", "p/h", "p/b", "p/g", "p/a", "p/c"]
    assert "8 functions: <b>4</b> up" in html
    assert '<b class="bad">2</b> failing, <b>1</b> stale, <b>1</b> not polled yet' in html
    assert "failing &times;3" in html


def counted(failures: int, successes: int, error: str, at: float = NOW - 60) -> ExecutionTotals:
    """Totals placed on an empty answer that then counted these executions, dated `at`."""
    when = datetime.fromtimestamp(at, UTC)
    executions = [
        Execution(f"x{n}", when, 0.1, n >= failures, "document", "trigger", error)
        for n in range(failures + successes)
    ]
    return ExecutionTotals(placed=False).place([], 0).advance(executions, failures + successes + 5)


def test_the_latest_failure_shows_its_error_escaped_and_redacted_with_trigger_and_time() -> None:
    REDACTOR.add("tok-5a4b3c2d1e")
    state = StateStore()
    key = TargetKey("shop", "charge")
    state.set_targets([key])
    state.record_success(key, stats(0.99), NOW)
    error = "Refused <b>tok-5a4b3c2d1e</b> by 'db'\n at x"
    state.record_executions(key, counted(2, 1, error, at=NOW - 120), replacing=None)
    row = page(state).split("<tbody>", 1)[1]
    assert "tok-5a4b3c2d1e" not in row
    assert (
        '<span class="detail">Refused &lt;b&gt;&lt;redacted&gt;&lt;/b&gt; by &lt;str&gt;</span>'
        in row
    )
    assert "document, trigger" in row
    assert "2m ago" in row
    assert "<b>" not in row.replace("<b>shop", "")  # no markup from the error text


def test_the_page_shows_the_latest_failures_own_class_where_the_metric_says_other() -> None:
    state = StateStore()
    key = TargetKey("shop", "charge")
    state.set_targets([key])
    state.record_success(key, stats(0.5), NOW)
    totals = ExecutionTotals(placed=False).place([], 0)
    for n, error in enumerate(["A", "B", "C", "D", "E is new"]):
        when = datetime.fromtimestamp(NOW - 100 + n, UTC)
        failed = Execution(f"x{n}", when, 0.1, False, "http", "trigger", error)
        totals = totals.advance([failed], n + 1)
    state.record_executions(key, totals, replacing=None)
    assert totals.failures.latest is not None
    assert totals.failures.latest.error_class == "other"  # the label is bounded
    row = page(state).split("<tbody>", 1)[1]
    assert '<span class="detail">E is new</span>' in row


def test_failing_functions_sort_by_the_recent_ratio_shown_beside_the_lifetime_one() -> None:
    state = StateStore()
    keys = {name: TargetKey("p", name) for name in ("old", "now", "fine")}
    state.set_targets(keys.values())
    state.record_success(keys["old"], stats(0.6), NOW)  # failed long ago: recovered since
    state.record_executions(keys["old"], counted(0, 10, ""), replacing=None)
    state.record_success(keys["now"], stats(0.99), NOW)  # fine for months, failing now
    state.record_executions(keys["now"], counted(3, 1, "Timeout"), replacing=None)
    state.record_success(keys["fine"], stats(0.9), NOW)  # no executions counted: lifetime
    html = page(state)
    # 25% recent, 90% lifetime (nothing recent), 100% recent (60% lifetime)
    assert rows(html) == ["p/now", "p/fine", "p/old"]
    now_row = html.split("<tbody>", 1)[1].split("</tr>")[0]
    assert '>25.00%</span> <span class="muted">of 4</span>' in now_row
    assert ">99.00%</span>" in now_row  # the lifetime ratio beside it
    assert "Recent (15m)" in html


def test_the_coverage_of_the_counted_executions_is_said() -> None:
    state = StateStore()
    keys = [TargetKey("p", "a"), TargetKey("p", "b")]
    state.set_targets(keys)
    for key in keys:  # each counted 4 of the 9 the stats reported: 5 unobserved
        state.record_success(key, stats(0.9), NOW)
        state.record_executions(key, counted(1, 3, "x"), replacing=None)
    html = page(state)
    assert "<b>44.4%</b> (8 of the 18 Mudbase reported" in html
    assert "none reported yet" in page(failed_once("auth", "x"))


def test_pagination_and_filter_keep_each_other() -> None:
    state = StateStore()
    keys = [TargetKey(f"proj{i % 2}", f"fn{i:04d}") for i in range(2 * PAGE_SIZE + 50)]
    state.set_targets(keys)
    for i, key in enumerate(keys):
        state.record_success(key, stats(i / len(keys)), NOW)
    first = page(state)
    assert len(rows(first)) == PAGE_SIZE
    assert rows(first)[0] == "proj0/fn0000"  # the lowest ratio
    assert "Showing 1&ndash;100 of 250; page 1 of 3." in first
    assert '<a href="?page=2">better &rarr;</a>' in first
    assert "worse" not in first
    last = page(state, "page=3")
    assert len(rows(last)) == 50
    assert '<a href="?page=2">&larr; worse</a>' in last
    filtered = page(state, "q=PROJ1/&page=2")
    assert len(rows(filtered)) == 25
    assert all(row.startswith("proj1/") for row in rows(filtered))
    assert "Showing 101&ndash;125 of 125 matching &ldquo;PROJ1/&rdquo; (of 250)" in filtered
    assert '<a href="?q=PROJ1%2F&amp;page=1">&larr; worse</a>' in filtered
    beyond = page(state, "page=9")
    assert rows(beyond) == []
    assert "None of 250" in beyond
    assert '<a href="?page=3">&larr; worse</a>' in beyond


def test_filter_matches_the_function_name_too() -> None:
    state = StateStore()
    key = TargetKey("p", "abc123")
    state.set_targets([key])
    state.sync_project("p", {key: (FunctionSettings(0.99), FunctionInfo("Resize", "http", None))})
    assert rows(page(state, "q=resize")) == ["p/abc123"]
    assert rows(page(state, "q=nothing")) == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=0", "page: a whole number"),
        ("page=abc", "page: a whole number"),
        ("page=%D9%A3", "page: a whole number"),  # an Arabic-Indic digit
        ("page=1&page=2", "page: given more than once"),
        ("q=" + "a" * 201, "q: at most 200 printable characters"),
        ("q=a%00b", "q: at most 200 printable characters"),
        ("&".join(f"x{i}=1" for i in range(30)), "invalid query string"),
    ],
)
def test_invalid_queries_are_refused(query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_query(query)


def test_unknown_parameters_are_ignored() -> None:
    assert parse_query("q=x&page=2&utm=1").page == 2


def test_budget_interval_build_info_and_url_without_credentials() -> None:
    stretched = make_plan(Demand(listed=1000), interval=30.0, budget=1600.0)
    url = "https://user:hunter2@mudbase.example:8443/api?key=s3cret#frag"
    html = page(StateStore(), overview=Overview(stretched, url))
    assert "<code>https://mudbase.example:8443/api</code>" in html
    assert "hunter2" not in html
    assert "s3cret" not in html
    per_15m = sum(stretched.per_15m().values())
    assert f"<b>{per_15m:,.0f}</b> of 1,600 requests per 15 minutes" in html
    assert "polled every <b>9m25s600ms</b>" in html  # 1000 requests at 1591 per 15 min
    assert "configured 30s, stretched to fit the budget" in html
    assert '<meta http-equiv="refresh" content="60">' in html  # at most a minute
    assert '<a href="/metrics">' in html
    assert "Version " in html
    assert "stretched" not in page(StateStore())
    assert '<meta http-equiv="refresh" content="30">' in page(StateStore())


@pytest.fixture
def server() -> Iterator[str]:
    state = StateStore()
    state.set_targets([TargetKey("p", "f")])
    exposition = CachedExposition(lambda: [], lambda: 0, CollectorRegistry())
    httpd = ExporterHTTPServer(
        ("127.0.0.1", 0),
        exposition,
        landing_page=lambda query: StatusPage(state).render(query, OVERVIEW),
        ready=lambda: True,
        reload=lambda: None,
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_the_server_serves_the_page_and_refuses_bad_queries(server: str) -> None:
    with urllib.request.urlopen(f"{server}/?q=p&page=1", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert rows(response.read().decode()) == ["p/f"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server}/?page=-1", timeout=5)
    assert refused.value.code == 400
    assert refused.value.read() == b"page: a whole number from 1 to 100000\n"
    refused.value.close()


@pytest.fixture
def statuses(monkeypatch: pytest.MonkeyPatch) -> list[tuple[TargetKey, float]]:
    """Every status the page works out from now on: the function and the time."""
    worked_out: list[tuple[TargetKey, float]] = []
    real_status_of = landing.status_of

    def counted(state: TargetState, now: float, interval: float) -> Status:
        worked_out.append((state.key, now))
        return real_status_of(state, now, interval)

    monkeypatch.setattr(landing, "status_of", counted)
    return worked_out


def test_views_of_an_unchanged_state_rank_the_functions_once(
    statuses: list[tuple[TargetKey, float]],
) -> None:
    """The page reloads itself every few seconds in every open tab: a view of a state that did
    not change since the last one renders its rows, and ranks nothing again."""
    keys = [TargetKey("p", f"f{i:03d}") for i in range(3 * PAGE_SIZE)]
    with serving_exporter("[{project: p, functions: [f]}]") as exporter:
        exporter.state.set_targets(keys)
        for i, key in enumerate(keys):
            exporter.state.record_success(key, stats(i / len(keys)), time.time())
        url = f"http://127.0.0.1:{exporter.port}"
        views = [http_get(f"{url}/{query}") for query in ("", "?page=2", "?q=f1", "")]
        assert [status for status, _ in views] == [200] * 4
        assert len(statuses) == len(keys)  # the first view ranked every function, once
        exporter.state.record_success(keys[0], stats(0.0), time.time())
        assert rows(http_get(url)[1].decode())[0] == "p/f000"
        assert len(statuses) == 2 * len(keys)  # a new state: ranked again, once


def test_the_ranking_is_kept_until_the_next_function_turns_stale(
    statuses: list[tuple[TargetKey, float]],
) -> None:
    state = StateStore()
    fresh, older = TargetKey("p", "fresh"), TargetKey("p", "older")
    state.set_targets([fresh, older])
    state.record_success(fresh, stats(0.5), NOW)
    state.record_success(older, stats(0.9), NOW - 60)  # stale 90 s after it: at NOW + 30
    status_page = StatusPage(state)
    for now in (NOW, NOW + 10, NOW + 30):
        html = status_page.render("", OVERVIEW, now=now).decode()
        assert rows(html) == ["p/fresh", "p/older"]
        assert "2 functions: <b>2</b> up" in html
    assert statuses == [(fresh, NOW), (older, NOW)]  # worked out once, at the first view
    html = status_page.render("", OVERVIEW, now=NOW + 30.5).decode()
    assert rows(html) == ["p/older", "p/fresh"]
    assert "<b>1</b> up" in html
    assert "<b>1</b> stale" in html


def test_a_shared_429_pause_shows_once_at_the_top_of_the_page() -> None:
    state = failed_once("forbidden", "HTTP 403", at=NOW - 9)
    paused = Overview(PLAN, "https://mudbase.example", paused_until=NOW + 42.5)
    html = page(state, overview=paused)
    banner = (
        "Mudbase rate-limited the exporter: every request paused until 02:47:22 UTC (43 s left)"
    )
    assert banner in html
    assert html.count("Mudbase rate-limited") == 1
    assert html.index(banner) < html.index('id="summary"')
    assert "<b>forbidden</b>" in html  # the function's own last error, not the pause
    over = Overview(PLAN, "https://mudbase.example", paused_until=NOW - 1)
    assert "Mudbase rate-limited" not in page(state, overview=over)
    assert "Mudbase rate-limited" not in page(state)
