"""Every metric the exporter publishes: name, type, HELP text and labels, in one place.

The collector and the self-metrics are built from these specs, and a test checks the metrics
table of docs/metrics.md against them and the live exposition: this module is the single source
of truth.
"""

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["gauge", "counter", "histogram", "info"]

FUNCTION_LABELS = ("project", "function")
_REFRESH_NOTE = "Refreshed in the background every poll interval, not at scrape time."


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()


# Per function: the stats from the logs endpoint. Labels: project, function.
FUNCTION_EXECUTIONS = MetricSpec(
    "mudbase_function_executions",
    "gauge",
    f"Total executions of the function, as reported by Mudbase (totalExecutions). {_REFRESH_NOTE}",
    FUNCTION_LABELS,
)
FUNCTION_FAILED_EXECUTIONS = MetricSpec(
    "mudbase_function_failed_executions",
    "gauge",
    "Failed executions of the function, as reported by Mudbase (failed / failedExecutions). "
    + _REFRESH_NOTE,
    FUNCTION_LABELS,
)
FUNCTION_SUCCESS_RATIO = MetricSpec(
    "mudbase_function_success_ratio",
    "gauge",
    "Share of successful executions, 0 to 1 (successRate / 100, or derived from the counts). "
    + _REFRESH_NOTE,
    FUNCTION_LABELS,
)
FUNCTION_AVG_EXECUTION_TIME = MetricSpec(
    "mudbase_function_avg_execution_time_seconds",
    "gauge",
    f"Average execution time of the function in seconds (avgExecutionTime). {_REFRESH_NOTE}",
    FUNCTION_LABELS,
)
FUNCTION_LAST_RUN = MetricSpec(
    "mudbase_function_last_run_timestamp_seconds",
    "gauge",
    f"Unix time of the function's latest execution (lastRun / lastExecution). {_REFRESH_NOTE}",
    FUNCTION_LABELS,
)
FUNCTION_UP = MetricSpec(
    "mudbase_function_up",
    "gauge",
    "1 if the latest poll of this function's logs succeeded, 0 if it failed. " + _REFRESH_NOTE,
    FUNCTION_LABELS,
)
FUNCTION_LAST_SUCCESS = MetricSpec(
    "mudbase_function_last_success_timestamp_seconds",
    "gauge",
    "Unix time of the latest successful poll of this function's logs (data freshness).",
    FUNCTION_LABELS,
)

FUNCTION_SLO_OBJECTIVE = MetricSpec(
    "mudbase_function_slo_objective",
    "gauge",
    "Success objective of the function from the exporter's config (0.99: 99% of executions "
    "succeed). Used by the SLO burn-rate alerts.",
    FUNCTION_LABELS,
)
FUNCTION_EXPECTED_RUN_INTERVAL = MetricSpec(
    "mudbase_function_expected_run_interval_seconds",
    "gauge",
    "Longest expected time between two runs of the function, from the exporter's config; "
    "only for functions that set expected_run_interval.",
    FUNCTION_LABELS,
)

FUNCTION_INFO = MetricSpec(
    "mudbase_function_info",
    "gauge",
    "Always 1: the function's name, trigger type and active flag, from Mudbase's function list "
    "(functions discovered with `functions: all`).",
    (*FUNCTION_LABELS, "name", "trigger_type", "active"),
)

# Per function, from the executions in its logs answers (execution_metrics: true).
FUNCTION_OBSERVED_EXECUTIONS = MetricSpec(
    "mudbase_function_observed_executions_total",
    "counter",
    "Executions of the function seen in its logs answers since the exporter started watching "
    "it, each counted once, by outcome (success, failure, unknown), trigger_type and "
    "invoked_by (fixed value sets; anything else is other, a missing field unknown).",
    (*FUNCTION_LABELS, "outcome", "trigger_type", "invoked_by"),
)
FUNCTION_UNOBSERVED_EXECUTIONS = MetricSpec(
    "mudbase_function_unobserved_executions_total",
    "counter",
    "Executions the function's stats reported that no fetched logs page held (more new "
    "executions per poll than execution_pages hold): observed / (observed + unobserved) is "
    "the coverage of the execution metrics.",
    FUNCTION_LABELS,
)
FUNCTION_EXECUTION_DURATION = MetricSpec(
    "mudbase_function_execution_duration_seconds",
    "histogram",
    "Execution time of the executions counted in mudbase_function_observed_executions_total "
    "(executionTime), for percentiles.",
    FUNCTION_LABELS,
)

# Per function, why it fails: from the failed executions in its logs answers (error classes:
# exporter/errorclass.py; at most 4 a function, the rest `other`).
FUNCTION_LAST_FAILURE_INFO = MetricSpec(
    "mudbase_function_last_failure_info",
    "gauge",
    "Always 1, one series per function with a failed execution seen: the newest one's "
    "error_class (its error text's first line with numbers, IDs and quoted values folded, "
    "secrets redacted, at most 60 characters; at most 4 classes a function, then other), "
    "trigger_type and invoked_by. Its first logs answer counts.",
    (*FUNCTION_LABELS, "error_class", "trigger_type", "invoked_by"),
)
FUNCTION_LAST_FAILURE_TIME = MetricSpec(
    "mudbase_function_last_failure_timestamp_seconds",
    "gauge",
    "Unix time of the newest failed execution seen in the function's logs answers (executedAt), "
    "the one mudbase_function_last_failure_info describes.",
    FUNCTION_LABELS,
)
FUNCTION_OBSERVED_FAILURES = MetricSpec(
    "mudbase_function_observed_failures_total",
    "counter",
    "Failed executions counted in mudbase_function_observed_executions_total, by error_class "
    "(as in mudbase_function_last_failure_info: at most 4 classes a function, then other). A "
    "class seen in the function's first logs answer starts at 0.",
    (*FUNCTION_LABELS, "error_class"),
)

FUNCTION_VALUE_METRICS = (
    FUNCTION_EXECUTIONS,
    FUNCTION_FAILED_EXECUTIONS,
    FUNCTION_SUCCESS_RATIO,
    FUNCTION_AVG_EXECUTION_TIME,
    FUNCTION_LAST_RUN,
)
FUNCTION_HEALTH_METRICS = (FUNCTION_UP, FUNCTION_LAST_SUCCESS)
FUNCTION_CONFIG_METRICS = (FUNCTION_SLO_OBJECTIVE, FUNCTION_EXPECTED_RUN_INTERVAL, FUNCTION_INFO)
FUNCTION_EXECUTION_METRICS = (
    FUNCTION_OBSERVED_EXECUTIONS,
    FUNCTION_UNOBSERVED_EXECUTIONS,
    FUNCTION_EXECUTION_DURATION,
)
FUNCTION_FAILURE_METRICS = (
    FUNCTION_LAST_FAILURE_INFO,
    FUNCTION_LAST_FAILURE_TIME,
    FUNCTION_OBSERVED_FAILURES,
)

# The exporter's own health.
UPSTREAM_REQUESTS = MetricSpec(
    "mudbase_exporter_upstream_requests_total",
    "counter",
    "HTTP requests the exporter sent to the Mudbase API, by endpoint and response status code.",
    ("endpoint", "code"),
)
POLL_ERRORS = MetricSpec(
    "mudbase_exporter_poll_errors_total",
    "counter",
    "Polls that failed after their retries, by error reason "
    "(auth, forbidden, not_found, rate_limited, server_error, client_error, timeout, "
    "connection, bad_response, internal).",
    ("reason",),
)
POLL_DURATION = MetricSpec(
    "mudbase_exporter_poll_duration_seconds",
    "histogram",
    "Time one poll of one function took, retries included.",
)
POLL_INTERVAL = MetricSpec(
    "mudbase_exporter_poll_interval_seconds",
    "gauge",
    "Time between two polls of the same function: the configured interval, or longer when "
    "stretched to keep within the request budget.",
)
CONFIGURED_POLL_INTERVAL = MetricSpec(
    "mudbase_exporter_configured_poll_interval_seconds",
    "gauge",
    "The poll interval the configuration asks for (interval); "
    "mudbase_exporter_poll_interval_seconds is what the request budget allows.",
)
REQUEST_BUDGET = MetricSpec(
    "mudbase_exporter_request_budget_per_15m",
    "gauge",
    "Requests to Mudbase this exporter may send per 15 minutes (mudbase.request_budget, "
    "divided by --total-shards).",
)
TARGETS = MetricSpec(
    "mudbase_exporter_targets",
    "gauge",
    "Number of functions the exporter polls: listed in the config, or discovered with "
    "`functions: all`.",
)
PLANNED_REQUESTS = MetricSpec(
    "mudbase_exporter_planned_requests_per_15m",
    "gauge",
    "Requests to Mudbase the request planner plans per 15 minutes at the effective interval, "
    "by kind: list (list pages of discovered projects), poll (listed functions' logs requests, "
    "all their pages), both with their measured re-sends, logs (optional change-driven logs "
    "requests: at most this many). Compare with mudbase_exporter_request_budget_per_15m.",
    ("kind",),
)
REQUEST_WAIT = MetricSpec(
    "mudbase_exporter_request_wait_seconds",
    "histogram",
    "Time a request waited for its turn in the request planner (budget, priority, "
    "concurrency, 429 pauses) before it was sent, by kind (auth, list, poll, logs).",
    ("kind",),
)
EXECUTIONS_OBSERVED = MetricSpec(
    "mudbase_exporter_observed_executions_total",
    "counter",
    "Executions counted from logs answers, every function's together since the exporter "
    "started (removed functions included): the exporter-wide sum of "
    "mudbase_function_observed_executions_total.",
)
EXECUTIONS_UNOBSERVED = MetricSpec(
    "mudbase_exporter_unobserved_executions_total",
    "counter",
    "Executions the stats reported that no fetched logs page held, every function's together "
    "since the exporter started: observed / (observed + unobserved) is the exporter-wide "
    "coverage of the execution metrics.",
)
RATE_LIMIT_PAUSED = MetricSpec(
    "mudbase_exporter_rate_limit_paused_seconds_total",
    "counter",
    "Seconds every request to Mudbase was paused because Mudbase answered 429.",
)
REQUESTS_SKIPPED = MetricSpec(
    "mudbase_exporter_requests_skipped_total",
    "counter",
    "Requests dropped, by kind: logs (optional change-driven logs requests that could not go "
    "out before their deadline; not those a round's share leaves for a later round), list and "
    "poll (refused because a 429 pause outlasted the poll's deadline).",
    ("kind",),
)
REQUEST_BUDGET_USED = MetricSpec(
    "mudbase_exporter_requests_per_15m",
    "gauge",
    "Requests to Mudbase the exporter sent in the last 15 minutes "
    "(Mudbase allows 2000 per 15 minutes per client IP by default).",
)
CONFIG_LAST_RELOAD_SUCCESSFUL = MetricSpec(
    "mudbase_exporter_config_last_reload_successful",
    "gauge",
    "1 if the last load of the configuration file succeeded, 0 otherwise.",
)
CONFIG_LAST_RELOAD_SUCCESS_TIME = MetricSpec(
    "mudbase_exporter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "Unix time of the last successful load of the configuration file.",
)
TOKEN_EXPIRY = MetricSpec(
    "mudbase_exporter_token_expiry_timestamp_seconds",
    "gauge",
    "Unix time the current Mudbase token expires (login sessions, and tokens that are JWTs with "
    "an exp claim). The source label says where the token comes from: config, file, env, login.",
    ("source",),
)
LOOP_ERRORS = MetricSpec(
    "mudbase_exporter_loop_errors_total",
    "counter",
    "Unexpected exceptions (bugs) caught in the exporter's long-running loops, by loop: render "
    "(the /metrics renderer), poll (a listed function), list (a discovered project), logs (a "
    "change-driven logs request), auth (the login session's renewal), heartbeat. Each is logged "
    "with its traceback; the loop goes on.",
    ("loop",),
)
LAST_RENDER = MetricSpec(
    "mudbase_exporter_last_render_timestamp_seconds",
    "gauge",
    "Unix time /metrics' per-function part was last rendered (it is rendered when the state "
    "changes, at least once per poll interval while anything is polled).",
)
BUILD_INFO = MetricSpec(
    "mudbase_exporter_build_info",
    "gauge",
    "Always 1; labels carry the exporter's version and the Python version it runs on.",
    ("version", "python_version"),
)

ALL_METRICS = (
    *FUNCTION_VALUE_METRICS,
    *FUNCTION_HEALTH_METRICS,
    *FUNCTION_CONFIG_METRICS,
    *FUNCTION_EXECUTION_METRICS,
    *FUNCTION_FAILURE_METRICS,
    UPSTREAM_REQUESTS,
    POLL_ERRORS,
    POLL_DURATION,
    POLL_INTERVAL,
    CONFIGURED_POLL_INTERVAL,
    REQUEST_BUDGET,
    TARGETS,
    REQUEST_BUDGET_USED,
    PLANNED_REQUESTS,
    REQUEST_WAIT,
    RATE_LIMIT_PAUSED,
    REQUESTS_SKIPPED,
    EXECUTIONS_OBSERVED,
    EXECUTIONS_UNOBSERVED,
    CONFIG_LAST_RELOAD_SUCCESSFUL,
    CONFIG_LAST_RELOAD_SUCCESS_TIME,
    TOKEN_EXPIRY,
    LOOP_ERRORS,
    LAST_RENDER,
    BUILD_INFO,
)

# Histogram buckets for one poll: fast loopback answers up to a slow upstream with retries.
POLL_DURATION_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A request's wait for its turn: none, a fraction of a second of pacing, up to a long 429 pause.
REQUEST_WAIT_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
