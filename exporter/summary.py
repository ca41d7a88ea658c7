"""The short summary `--config.check` prints: what will be polled and what it costs."""

from exporter.budget import effective_interval
from exporter.config import (
    Credentials,
    LoadedConfig,
    LoginCredentials,
    TargetSpec,
    TokenCredentials,
)
from exporter.durations import format_duration
from exporter.poller import POLL_DEADLINE_SHARE
from exporter.targets import Shard, TargetKey

MUDBASE_BUDGET_PER_15M = 2000
WINDOW = 15 * 60


def requests_per_15m(functions: int, interval: float) -> float:
    """Logs requests per 15 minutes with no retries: one per function per interval."""
    return functions * WINDOW / interval


def config_summary(loaded: LoadedConfig, shard: Shard | None = None) -> str:
    config, shard = loaded.config, shard or Shard()
    keys = [k for k in config.function_settings() if shard.owns(k)]
    projects = len({key.project for key in keys})
    per_15m = requests_per_15m(len(keys), config.interval)
    budget = config.mudbase.request_budget / shard.total
    interval = effective_interval(config.interval, len(keys), budget)
    lines = [
        f"configuration OK: {loaded.source}",
        f"  mudbase: {config.mudbase.url} ({describe_credentials(loaded.credentials)}), "
        f"timeout {format_duration(config.mudbase.timeout)}, {config.mudbase.retries} retries",
        f"  interval {format_duration(config.interval)}, concurrency {config.concurrency}, "
        f"last values kept {format_duration(config.keep_values_for)} after a failure",
        f"  {len(keys)} function(s) in {projects} project(s)"
        + (f", shard {shard.index} of {shard.total}:" if shard.total > 1 else ":"),
    ]
    for target in config.targets:
        if target.functions == "all":
            if shard.owns_project(target.project):
                lines.append(f"    {target.project}: all functions{_selection(target)}")
            continue
        mine = [f.id for f in target.listed if shard.owns(TargetKey(target.project, f.id))]
        if mine:
            lines.append(f"    {target.project}: {', '.join(mine)}")
    selectors = shard.own_projects(config.project_selectors())
    if selectors:
        per_15m += requests_per_15m(len(selectors), interval)
        lines += _discovery_lines(len(selectors), len(keys), interval, budget, config.max_age)
    at_least = "at least " if selectors else ""
    lines.append(
        f"  requests: {at_least}{per_15m:.0f} per 15 minutes at this interval; request budget "
        f"{budget:.0f} per 15 minutes (Mudbase allows {MUDBASE_BUDGET_PER_15M} per client IP)"
    )
    if interval > config.interval:
        lines.append(
            f"  the budget stretches the interval to {format_duration(round(interval))}: "
            "every function is still polled, less often; raise mudbase.request_budget (if "
            "nothing else shares the IP), poll fewer functions, or shard"
        )
    return "\n".join(lines)


def _discovery_lines(
    projects: int, listed: int, interval: float, budget: float, max_age: float
) -> list[str]:
    """What discovery costs: a request per 100 functions per interval, known once listed."""
    per_round = budget * interval / WINDOW
    total_pages = max(0, int(per_round) - listed)
    one_project = int(per_round * POLL_DEADLINE_SHARE)
    return [
        f"  discovery: {projects} project(s) listed every {format_duration(interval)}, one "
        "request per 100 functions; their stats come from the list; logs only for functions "
        f"that changed, and at least every {format_duration(max_age)}, with what the budget "
        "leaves",
        f"    at this interval and budget the listings fit up to about {total_pages * 100} "
        f"discovered functions ({min(total_pages, one_project) * 100} in one project, whose "
        "listing must end within 80% of the interval); beyond that the interval stretches at "
        "run time",
    ]


def describe_credentials(credentials: Credentials) -> str:
    """How the exporter authenticates, without any secret."""
    where = {"config": "the config file", "file": "a file", "env": "the environment"}
    if isinstance(credentials, LoginCredentials):
        return f"login as {credentials.email}, password from {where[credentials.source]}"
    what = "token" if isinstance(credentials, TokenCredentials) else "API key"
    return f"{what} from {where[credentials.source]}"


def _selection(target: TargetSpec) -> str:
    parts = []
    if target.include is not None:
        parts.append(f"matching {target.include.pattern!r}")
    if target.exclude is not None:
        parts.append(f"not matching {target.exclude.pattern!r}")
    if target.active_only:
        parts.append("active only")
    return f" ({', '.join(parts)})" if parts else ""
