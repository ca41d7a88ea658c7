"""The short summary `--config.check` prints: what will be polled and what it costs."""

from exporter.config import Credentials, LoadedConfig, LoginCredentials, TokenCredentials
from exporter.durations import format_duration

MUDBASE_BUDGET_PER_15M = 2000
WINDOW = 15 * 60


def requests_per_15m(functions: int, interval: float) -> float:
    """Logs requests per 15 minutes with no retries: one per function per interval."""
    return functions * WINDOW / interval


def config_summary(loaded: LoadedConfig) -> str:
    config = loaded.config
    keys = config.function_keys()
    projects = len({project for project, _ in keys})
    per_15m = requests_per_15m(len(keys), config.interval)
    worst = per_15m * (config.mudbase.retries + 1)
    lines = [
        f"configuration OK: {loaded.source}",
        f"  mudbase: {config.mudbase.url} ({describe_credentials(loaded.credentials)}), "
        f"timeout {format_duration(config.mudbase.timeout)}, {config.mudbase.retries} retries",
        f"  interval {format_duration(config.interval)}, concurrency {config.concurrency}, "
        f"last values kept {format_duration(config.keep_values_for)} after a failure",
        f"  {len(keys)} function(s) in {projects} project(s):",
    ]
    lines += [f"    {t.project}: {', '.join(f.id for f in t.functions)}" for t in config.targets]
    lines.append(
        f"  requests: {per_15m:.0f} per 15 minutes ({worst:.0f} if every poll retried fully); "
        f"Mudbase allows {MUDBASE_BUDGET_PER_15M} per 15 minutes per client IP"
    )
    if per_15m > MUDBASE_BUDGET_PER_15M:
        lines.append(
            "  WARNING: this exceeds Mudbase's default rate limit: raise interval or poll "
            "fewer functions"
        )
    return "\n".join(lines)


def describe_credentials(credentials: Credentials) -> str:
    """How the exporter authenticates, without any secret."""
    where = {"config": "the config file", "file": "a file", "env": "the environment"}
    if isinstance(credentials, LoginCredentials):
        return f"login as {credentials.email}, password from {where[credentials.source]}"
    what = "token" if isinstance(credentials, TokenCredentials) else "API key"
    return f"{what} from {where[credentials.source]}"
