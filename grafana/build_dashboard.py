"""Builds grafana/dashboards/mudbase-exporter.json, the importable Grafana dashboard.

Run `python grafana/build_dashboard.py` after changing a panel; the test suite checks that the
committed JSON is what this script produces (`--check`). Plain dictionaries in Grafana's JSON
model (schema 39, Grafana 10/11): no hard-coded datasource UID, `$project`/`$function`
variables, a unit and a description on every panel, `$__rate_interval` in every rate().
"""

import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "mudbase-exporter.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
BURN_UNIT = "suffix:\N{MULTIPLICATION SIGN}"  # a burn rate reads 14.4 with a times sign
SEL = 'project=~"$project", function=~"$function"'
Panel = dict[str, Any]

_layout = {"y": 0}


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
        "range": True,
    }


RECORDED = "mudbase_function:"  # the prefix of every series prometheus/mudbase-rules.yml records
NEEDS_RULES = (
    " Reads the recording rules of prometheus/mudbase-rules.yml: it shows data once they are"
    " loaded in Prometheus and have run for up to 10 minutes."
)
NO_RULES_NOTE = (
    "No data yet: needs prometheus/mudbase-rules.yml loaded in Prometheus, and up to 10 minutes "
    "of data after that"
)
OBJECTIVE = "mudbase_function:slo_objective:max"  # each function's objective, per function
Steps = list[tuple[float | None, str]]  # (from value, colour), the first from None
NEUTRAL: Steps = [(None, "blue")]  # a count or a time with no good or bad value of its own


def thresholds(steps: Steps) -> dict[str, Any]:
    """Grafana's absolute thresholds: each colour from its value up to the next one."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def panel(
    kind: str,
    title: str,
    description: str,
    unit: str,
    exprs: list[tuple[str, str]],
    *,
    width: int,
    height: int = 8,
    **options: Any,
) -> Panel:
    defaults = {"unit": unit, **options.pop("defaults", {})}
    if any(RECORDED in expr for expr, _ in exprs):  # say so where nothing would show otherwise
        description += NEEDS_RULES
        defaults["noValue"] = NO_RULES_NOTE
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options.pop("options", {}),
        "targets": [_target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(exprs)],
        "gridPos": {"w": width, "h": height},
        **options,
    }


def row(title: str, panels: list[Panel]) -> list[Panel]:
    """A row header followed by its panels, laid out left to right, wrapping at 24 columns."""
    placed: list[Panel] = [
        {
            "type": "row",
            "title": title,
            "collapsed": False,
            "panels": [],
            "gridPos": {"x": 0, "y": _layout["y"], "w": 24, "h": 1},
        }
    ]
    _layout["y"] += 1
    x = 0
    for item in panels:
        width, height = item["gridPos"]["w"], item["gridPos"]["h"]
        if x + width > 24:
            x, _layout["y"] = 0, _layout["y"] + height
        item["gridPos"] = {"x": x, "y": _layout["y"], "w": width, "h": height}
        x += width
        placed.append(item)
    _layout["y"] += max(p["gridPos"]["h"] for p in panels)
    return placed


def line_at(value: float) -> dict[str, Any]:
    """A time series panel's red line at `value` (a page's threshold, a pace)."""
    steps = thresholds([(None, "green"), (value, "red")])
    return {"thresholds": steps, "custom": {"thresholdsStyle": {"mode": "line"}}}


def stat(title: str, description: str, unit: str, expr: str, steps: Steps, **options: Any) -> Panel:
    """A single number, coloured by what it means (Grafana's default would turn anything
    above 80 red)."""
    return panel(
        "stat",
        title,
        description,
        unit,
        [(expr, "")],
        width=4,
        height=5,
        options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
        defaults={"thresholds": thresholds(steps), **options.pop("defaults", {})},
        **options,
    )


def series(
    title: str,
    description: str,
    unit: str,
    exprs: list[tuple[str, str]],
    width: int = 12,
    **options: Any,
) -> Panel:
    return panel("timeseries", title, description, unit, exprs, width=width, **options)


def overview() -> list[Panel]:
    burn_1h = f"mudbase_function:failure_ratio:1h{{{SEL}}} / (1 - {OBJECTIVE}{{{SEL}}})"
    age = (
        "max(max by (instance) (time() - mudbase_function_last_success_timestamp_seconds"
        f"{{{SEL}}}) / max by (instance) (mudbase_exporter_poll_interval_seconds))"
    )
    return row(
        "Overview",
        [
            stat(
                "Functions up",
                "Share of the selected functions whose latest poll succeeded: green when all "
                "are, orange when some are not, red when most are not.",
                "percentunit",
                f"sum(mudbase_function_up{{{SEL}}}) / count(mudbase_function_up{{{SEL}}})",
                [(None, "red"), (0.5, "orange"), (1, "green")],
            ),
            stat(
                "Worst burn rate (1h)",
                "The highest failure ratio over the last hour among the selected functions, "
                "as a multiple of what each function's objective allows (1 - objective): under "
                "1 within the objective, 14.4 and up pages.",
                BURN_UNIT,
                f"max({burn_1h})",
                [(None, "green"), (1, "yellow"), (6, "orange"), (14.4, "red")],
            ),
            stat(
                "Executions per minute",
                "Executions of all selected functions, per minute (5-minute average).",
                "opm",
                f"sum(sum_over_time(mudbase_function:executions:increase1m{{{SEL}}}[4m59s])) / 5",
                NEUTRAL,
            ),
            stat(
                "Failures (1h)",
                "Failed executions of all selected functions in the last hour.",
                "short",
                f"sum(mudbase_function:failed_executions:increase1h{{{SEL}}})",
                NEUTRAL,
            ),
            stat(
                "Average execution time",
                "Mean of the functions' average execution times.",
                "s",
                f"avg(mudbase_function_avg_execution_time_seconds{{{SEL}}})",
                NEUTRAL,
            ),
            stat(
                "Data age",
                "Time since the oldest successful poll among the selected functions, in poll "
                "intervals of its exporter: 1 to 2 is fresh, 5 and more is stale (the "
                "MudbaseFunctionDataStale alert).",
                BURN_UNIT,
                age,
                [(None, "green"), (2, "orange"), (5, "red")],
            ),
        ],
    )


def per_function() -> list[Panel]:
    legend = "{{project}}/{{function}}"
    return row(
        "Per function",
        [
            series(
                "Success ratio",
                "Success ratio over the last 5 minutes (solid) and since the "
                "function exists, as Mudbase reports it.",
                "percentunit",
                [
                    (f"1 - mudbase_function:failure_ratio:5m{{{SEL}}}", f"{legend} 5m"),
                    (
                        f"max by (project, function) (mudbase_function_success_ratio{{{SEL}}})",
                        f"{legend} all time",
                    ),
                ],
                defaults={"min": 0, "max": 1},
            ),
            series(
                "Executions per minute",
                "Executions in each minute, as Mudbase counts them.",
                "opm",
                [(f"mudbase_function:executions:increase1m{{{SEL}}}", legend)],
            ),
            series(
                "Failures per minute",
                "Failed executions in each minute, as Mudbase counts them.",
                "opm",
                [(f"mudbase_function:failed_executions:increase1m{{{SEL}}}", legend)],
            ),
            series(
                "Average execution time",
                "Average execution time as reported by Mudbase.",
                "s",
                [(f"mudbase_function_avg_execution_time_seconds{{{SEL}}}", legend)],
            ),
            series(
                "Time since last run",
                "Time since each function last ran; compare with its "
                "expected_run_interval (dashed) where configured.",
                "s",
                [
                    (f"time() - mudbase_function_last_run_timestamp_seconds{{{SEL}}}", legend),
                    (
                        f"mudbase_function_expected_run_interval_seconds{{{SEL}}}",
                        f"{legend} expected",
                    ),
                ],
            ),
            series(
                "Poll health",
                "1 when the exporter's latest poll of the function succeeded.",
                "bool_on_off",
                [(f"mudbase_function_up{{{SEL}}}", legend)],
            ),
        ],
    )


OBSERVED = "mudbase_function_observed_executions_total"
DURATION_BUCKETS = "mudbase_function_execution_duration_seconds_bucket"


def executions() -> list[Panel]:
    legend = "{{project}}/{{function}}"
    observed = f"rate({OBSERVED}{{{SEL}}}[$__rate_interval])"
    unobserved = f"rate(mudbase_function_unobserved_executions_total{{{SEL}}}[$__rate_interval])"
    buckets = f"rate({DURATION_BUCKETS}{{{SEL}}}[$__rate_interval])"
    # 0 where nothing was observed, so that a coverage of 0% shows as 0, not as no data
    seen = (
        f"(sum by (project, function) ({observed}) or 0 * sum by (project, function) "
        f"({unobserved}))"
    )
    return row(
        "Executions",
        [
            series(
                "Execution time percentiles",
                "p50, p95 and p99 of the execution time of the selected functions, from the "
                "executions the exporter observed in Mudbase's logs.",
                "s",
                [
                    (f"histogram_quantile({q}, sum by (le) ({buckets}))", f"p{round(q * 100)}")
                    for q in (0.5, 0.95, 0.99)
                ],
                width=8,
            ),
            series(
                "p95 execution time per function",
                "95th percentile of each function's execution time.",
                "s",
                [(f"histogram_quantile(0.95, sum by (project, function, le) ({buckets}))", legend)],
                width=8,
            ),
            series(
                "Observed executions by outcome",
                "Executions per minute seen in logs answers, by outcome.",
                "opm",
                [(f"60 * sum by (outcome) ({observed})", "{{outcome}}")],
                width=8,
            ),
            series(
                "Observed executions by invoker",
                "Executions per minute by invokedBy (trigger, manual, api_key, cron).",
                "opm",
                [(f"60 * sum by (invoked_by) ({observed})", "{{invoked_by}}")],
                width=8,
            ),
            series(
                "Observed executions by trigger type",
                "Executions per minute by triggerType.",
                "opm",
                [(f"60 * sum by (trigger_type) ({observed})", "{{trigger_type}}")],
                width=8,
            ),
            series(
                "Execution coverage",
                "Share of the executions Mudbase counted that the exporter saw in logs "
                "answers (the rest are unobserved: raise execution_pages if it is low).",
                "percentunit",
                [
                    (
                        f"{seen} / ({seen} + sum by (project, function) ({unobserved}))",
                        legend,
                    )
                ],
                width=8,
                defaults={"min": 0, "max": 1},
            ),
            series(
                "Failures by error class",
                "Failed executions per minute seen in logs answers, per function and error "
                "class: the error text's first line with numbers, IDs and quoted values folded, "
                "secrets redacted (at most 4 classes a function, then other). "
                "mudbase_function_last_failure_info has each function's latest one.",
                "opm",
                [
                    (
                        "60 * sum by (project, function, error_class) "
                        f"(rate(mudbase_function_observed_failures_total{{{SEL}}}"
                        "[$__rate_interval]))",
                        "{{project}}/{{function}}: {{error_class}}",
                    )
                ],
                width=24,
            ),
        ],
    )


def slo() -> list[Panel]:
    legend = "{{project}}/{{function}}"
    budget = f"(1 - {OBJECTIVE}{{{SEL}}})"
    return row(
        "SLO and error budget",
        [
            series(
                "Burn rate (1h)",
                "How fast each function spends its error budget: failure ratio over 1h "
                "divided by the budget (1 - objective). 14.4 (the line) pages, with the 5m "
                "window above it too.",
                BURN_UNIT,
                [(f"mudbase_function:failure_ratio:1h{{{SEL}}} / {budget}", legend)],
                width=8,
                defaults=line_at(14.4),
            ),
            series(
                "Burn rate (6h)",
                "Failure ratio over 6h divided by the error budget. 6 (the line) pages, with "
                "the 30m window above it too.",
                BURN_UNIT,
                [(f"mudbase_function:failure_ratio:6h{{{SEL}}} / {budget}", legend)],
                width=8,
                defaults=line_at(6),
            ),
            series(
                "30-day error budget spent in the last 3 days",
                "Share of a 30-day error budget that the last 3 days' failures spent, at the "
                "function's traffic of those days: 10% (the line) is the pace that spends the "
                "budget in exactly 30 days; above it, the budget runs out early.",
                "percentunit",
                [(f"mudbase_function:failure_ratio:3d{{{SEL}}} / {budget} * 3 / 30", legend)],
                width=8,
                defaults=line_at(0.1),
            ),
        ],
    )


EXPORTER_OBSERVED = "rate(mudbase_exporter_observed_executions_total[$__rate_interval])"
EXPORTER_UNOBSERVED = "rate(mudbase_exporter_unobserved_executions_total[$__rate_interval])"


def exporter_health() -> list[Panel]:
    return row(
        "Exporter health",
        [
            series(
                "Poll errors by reason",
                "Failed polls per second by reason (auth, timeout, server_error...).",
                "ops",
                [
                    (
                        "sum by (reason) (rate(mudbase_exporter_poll_errors_total"
                        "[$__rate_interval]))",
                        "{{reason}}",
                    )
                ],
                width=8,
            ),
            series(
                "Upstream requests by status",
                "Requests to Mudbase per second by HTTP status.",
                "reqps",
                [
                    (
                        "sum by (code) (rate(mudbase_exporter_upstream_requests_total"
                        "[$__rate_interval]))",
                        "{{code}}",
                    )
                ],
                width=8,
            ),
            series(
                "Poll duration",
                "Time one poll takes, retries included.",
                "s",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) (rate("
                        "mudbase_exporter_poll_duration_seconds_bucket[$__rate_interval])))",
                        f"p{p}",
                    )
                    for q, p in ((0.5, 50), (0.95, 95), (0.99, 99))
                ],
                width=8,
            ),
            series(
                "Request budget",
                "Requests to Mudbase per 15 minutes, summed over the exporters (Mudbase's limit "
                "is per client IP: 2000 by default): sent in the last 15 minutes, the budget, "
                "and the request planner's plan by kind (list pages, listed functions' polls, "
                "optional change-driven logs requests at most).",
                "short",
                [
                    ("sum(mudbase_exporter_requests_per_15m)", "sent"),
                    ("sum(mudbase_exporter_request_budget_per_15m)", "budget"),
                    (
                        "sum by (kind) (mudbase_exporter_planned_requests_per_15m)",
                        "planned {{kind}}",
                    ),
                ],
                width=8,
            ),
            series(
                "Wait for a turn (p95)",
                "How long requests wait in the request planner before they are sent (budget, "
                "priority, concurrency, 429 pauses), by kind. List pages go first.",
                "s",
                [
                    (
                        "histogram_quantile(0.95, sum by (kind, le) (rate("
                        "mudbase_exporter_request_wait_seconds_bucket[$__rate_interval])))",
                        "{{kind}}",
                    )
                ],
                width=8,
            ),
            series(
                "Execution coverage, all functions",
                "Share of the executions Mudbase counted, every function of each exporter "
                "together, that the exporter saw in logs answers. Low at thousands of "
                "discovered functions: the listings take most of the budget (see the "
                "operations guide).",
                "percentunit",
                [
                    (
                        f"sum by (instance) ({EXPORTER_OBSERVED}) / (sum by (instance) "
                        f"({EXPORTER_OBSERVED}) + sum by (instance) ({EXPORTER_UNOBSERVED}))",
                        "{{instance}}",
                    )
                ],
                width=8,
                defaults={"min": 0, "max": 1},
            ),
            series(
                "Paused by 429s",
                "Share of the time every request to Mudbase was paused because Mudbase "
                "answered 429 (its limit is per client IP).",
                "percentunit",
                [
                    (
                        "max by (instance) (rate(mudbase_exporter_rate_limit_paused_seconds_total"
                        "[$__rate_interval]))",
                        "{{instance}}",
                    )
                ],
                width=6,
            ),
            series(
                "Requests skipped for lack of budget",
                "Requests per second dropped, by kind: optional logs requests that could not "
                "go out before their deadline (those a round's share leaves for a later round "
                "are not counted), list and poll requests refused because a 429 pause outlasted "
                "their poll.",
                "reqps",
                [
                    (
                        "sum by (kind) (rate(mudbase_exporter_requests_skipped_total"
                        "[$__rate_interval]))",
                        "{{kind}}",
                    )
                ],
                width=6,
            ),
            series(
                "Configured functions",
                "Functions each exporter polls.",
                "short",
                [("sum by (instance) (mudbase_exporter_targets)", "{{instance}}")],
                width=6,
            ),
            series(
                "Poll interval",
                "Effective interval of each exporter: the configured one, or longer when the "
                "request planner stretched it to fit a round's required requests in the budget.",
                "s",
                [("max by (instance) (mudbase_exporter_poll_interval_seconds)", "{{instance}}")],
                width=6,
            ),
        ],
    )


def variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": name.capitalize(),
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-query"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "sort": 1,
        "current": {"text": "All", "value": "$__all"},
    }


def dashboard() -> dict[str, Any]:
    _layout["y"] = 0
    return {
        "title": "Mudbase functions",
        "uid": "mudbase-functions",
        "description": "Mudbase serverless functions, from mudbase-exporter.",
        "tags": ["mudbase", "serverless"],
        "editable": True,
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                variable("project", "label_values(mudbase_function_up, project)"),
                variable(
                    "function", 'label_values(mudbase_function_up{project=~"$project"}, function)'
                ),
            ]
        },
        "panels": [*overview(), *per_function(), *executions(), *slo(), *exporter_health()],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(
                f"{OUTPUT} is out of date: run python grafana/build_dashboard.py", file=sys.stderr
            )
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
