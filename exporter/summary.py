"""The short summary `--config.check` prints: what will be polled and what it costs.

The costs are the request planner's own plan (`exporter.planner.projected_plan`), made from the
configuration: the exporter starts from the same plan.
"""

from exporter.config import (
    KEEP_VALUES_INTERVALS,
    Config,
    Credentials,
    LoadedConfig,
    LoginCredentials,
    TargetSpec,
    TokenCredentials,
    public_url,
)
from exporter.durations import format_duration
from exporter.planner import (
    LISTING_SHARE,
    MUDBASE_LIMIT,
    Demand,
    Plan,
    ProjectSize,
    RequestKind,
    make_plan,
    projected_plan,
    shard_budget,
)
from exporter.targets import Shard, TargetKey
from exporter.upstream import LIST_PAGE_SIZE

SHOWN = 10  # function IDs shown per project
CYCLE_SIZES = (1_000, 5_000, 10_000)  # discovered functions the logs cycle is projected for


def config_summary(loaded: LoadedConfig, shard: Shard | None = None) -> str:
    config, shard = loaded.config, shard or Shard()
    keys = [k for k in config.function_settings() if shard.owns(k)]
    discovered = [s.project for s in shard.own_projects(config.project_selectors())]
    pages_per_poll = config.pages_per_poll
    budget = shard_budget(config.mudbase.request_budget, shard.total)
    plan = projected_plan(
        len(keys),
        discovered,
        config.interval,
        budget,
        pages_per_poll=pages_per_poll,
        change_driven_logs=loaded.change_driven_logs,
        concurrency=config.concurrency,
    )
    retries = config.mudbase.retries
    credentials = describe_credentials(loaded.credentials)
    lines = [
        f"configuration OK: {loaded.source}",
        f"  mudbase: {public_url(config.mudbase.url)} ({credentials}), "
        f"timeout {format_duration(config.mudbase.timeout)}, "
        f"{retries} {'retry' if retries == 1 else 'retries'}",
        f"  interval {format_duration(config.interval)}, concurrency {config.concurrency}, "
        f"last values kept {_kept(config)} after a failure",
        f"  {_what(len(keys), len({k.project for k in keys}), len(discovered))}"
        + (f", shard {shard.index} of {shard.total}:" if shard.total > 1 else ":"),
        *_target_lines(config.targets, shard),
        *_plan_lines(plan, pages_per_poll),
    ]
    if discovered:
        lines += _discovery_lines(plan, config.max_age)
        if loaded.change_driven_logs:
            lines += _cycle_lines(plan)
    if plan.stretched:
        lines.append(
            f"  the budget stretches the interval to {format_duration(round(plan.interval))}: "
            "every function is still polled, less often; for the configured interval raise "
            "mudbase.request_budget (if nothing else shares the IP), poll fewer functions, or "
            "shard"
        )
    return "\n".join(lines)


def _kept(config: Config) -> str:
    if config.stale_after is not None:
        return format_duration(config.stale_after)
    return f"{KEEP_VALUES_INTERVALS} intervals"


def _what(listed: int, listed_projects: int, discovered: int) -> str:
    parts = []
    if listed:
        parts.append(f"{listed} listed function(s) in {listed_projects} project(s)")
    if discovered:
        parts.append(f"{discovered} project(s) whose functions are discovered")
    return "; ".join(parts) or "nothing to poll"


def _target_lines(targets: list[TargetSpec], shard: Shard) -> list[str]:
    lines = []
    for target in targets:
        if target.functions == "all":
            if shard.owns_project(target.project):
                lines.append(f"    {target.project}: all functions{_selection(target)}")
            continue
        mine = [f.id for f in target.listed if shard.owns(TargetKey(target.project, f.id))]
        if mine:
            more = f" and {len(mine) - SHOWN} more" if len(mine) > SHOWN else ""
            lines.append(f"    {target.project}: {', '.join(mine[:SHOWN])}{more}")
    return lines


def _plan_lines(plan: Plan, pages_per_poll: int) -> list[str]:
    """The planner's requests per 15 minutes by kind, against the budget."""
    per_15m = plan.per_15m()
    at_least = "at least " if plan.demand.projects else ""
    required = per_15m[RequestKind.LIST] + per_15m[RequestKind.POLL]
    pages = f" x {pages_per_poll} pages" if pages_per_poll > 1 else ""
    lines = [
        f"  requests per 15 minutes at a {format_duration(round(plan.interval))} interval: "
        f"{at_least}{required:.0f} required, up to {per_15m[RequestKind.LOGS]:.0f} optional; "
        f"request budget {plan.budget:.0f} (Mudbase allows {MUDBASE_LIMIT} per client IP)",
        f"    listed functions' polls: {per_15m[RequestKind.POLL]:.0f} "
        f"({plan.demand.listed} function(s){pages} every interval)",
    ]
    if plan.demand.projects:
        lines += [
            f"    list pages: at least {per_15m[RequestKind.LIST]:.0f} (one per "
            f"{LIST_PAGE_SIZE} functions of each discovered project, known once listed)",
            f"    change-driven logs requests: up to {per_15m[RequestKind.LOGS]:.0f} (what the "
            "required requests leave of the budget, less a fifth of headroom)",
        ]
    return lines


def _discovery_lines(plan: Plan, max_age: float) -> list[str]:
    """What discovery costs: a request per 100 functions per interval, known once listed."""
    in_all, in_one = plan.discovery_capacity()
    return [
        "  discovery: every discovered function's stats come from its project's listing; "
        "logs only for functions that changed (at least every "
        f"{format_duration(max_age)}), with what the budget leaves",
        f"    at the configured interval and budget the listings fit up to about {in_all} "
        f"discovered functions ({in_one} in one project, whose listing is planned to end within "
        f"{LISTING_SHARE:.0%} of the interval); beyond that the interval stretches at run time",
    ]


def _cycle_lines(plan: Plan) -> list[str]:
    """How often each discovered function's logs can be fetched (its error and executions
    known), at a few sizes, and what twice the interval or twice the budget would make of it."""
    lines = [
        "  logs cycle: how often each discovered function's logs can be fetched (why it fails, "
        "its executions) if all of them change; functions with new failures go first"
    ]
    for functions in CYCLE_SIZES:
        now = _cycle(plan, functions, plan.configured_interval, plan.budget)
        slower = _cycle(plan, functions, 2 * plan.configured_interval, plan.budget)
        bigger = _cycle(plan, functions, plan.configured_interval, 2 * plan.budget)
        lines.append(
            f"    {functions:,} discovered functions: {now}; at interval "
            f"{format_duration(2 * plan.configured_interval)}: {slower}; at request_budget "
            f"{2 * plan.budget:.0f}: {bigger}"
        )
    return lines


def _cycle(plan: Plan, functions: int, interval: float, budget: float) -> str:
    """Every how long each of `functions` discovered functions (spread over the configured
    discovered projects) can have its logs fetched, by the planner's plan for them."""
    projects = list(plan.demand.projects) or ["p"]
    share = -(-functions // len(projects))
    size = ProjectSize(-(-share // LIST_PAGE_SIZE), share)
    demand = Demand(
        plan.demand.listed, plan.demand.pages_per_poll, dict.fromkeys(projects, size), True
    )
    projected = make_plan(demand, interval, budget)
    if projected.logs_requests < 1:
        return "never (the listings leave no logs requests)"
    seconds = max(1.0, functions / projected.logs_requests) * projected.interval
    every = format_duration(round(seconds / 60) * 60 if seconds >= 3600 else round(seconds))
    return f"every {every} ({projected.logs_requests:.0f} a round)"


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
