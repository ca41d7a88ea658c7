"""What the simulator serves: the built-in demo, or a YAML scenario file.

A scenario file:
    tokens: [sim-token]
    users: {ops@example.com: a-password}         # optional: accounts for login mode
    rate_limit: {requests: 2000, window: 15m}   # optional; Mudbase's per-IP limit by default
    functions:
      - {project: demo_shop, id: checkout, dialect: docs, rate_per_minute: 120,
         failure_ratio: 0.02, drift_amplitude: 0.05, drift_period: 300}

A function runs only at its `rate_per_minute` (default 0: it never runs on its own).
"""

from pathlib import Path
from typing import Any

import yaml

from exporter.durations import parse_duration
from exporter.simulator.limits import MUDBASE_API_LIMIT, SlidingLimit
from exporter.simulator.model import SimFunction
from exporter.simulator.server import Simulator

DEMO_TOKEN = "demo-token-not-a-secret"  # noqa: S105 - the demo's public, fake token

DEMO_FUNCTIONS: list[dict[str, Any]] = [
    # steady and healthy, docs dialect
    {
        "project": "demo_shop",
        "id": "checkout",
        "name": "Checkout",
        "trigger_type": "http",
        "rate_per_minute": 240,
        "failure_ratio": 0.01,
        "mean_execution_ms": 180,
        "initial_executions": 12000,
    },
    # fails 3% to 27% of its runs on an hourly wave: MudbaseFunctionSuccessRateLow fires about
    # ten minutes after start (30m window, 10m `for`) and resolves later in the hour
    {
        "project": "demo_shop",
        "id": "send-receipt",
        "name": "Send receipt",
        "trigger_type": "document",
        "rate_per_minute": 120,
        "failure_ratio": 0.15,
        "drift_amplitude": 0.12,
        "drift_period": 3600,
        "mean_execution_ms": 350,
        "initial_executions": 4000,
    },
    # OpenAPI dialect: no successRate, the exporter derives it
    {
        "project": "demo_shop",
        "id": "resize-image",
        "name": "Resize image",
        "trigger_type": "file",
        "dialect": "openapi",
        "rate_per_minute": 60,
        "failure_ratio": 0.05,
        "drift_amplitude": 0.04,
        "drift_period": 300,
        "mean_execution_ms": 900,
        "initial_executions": 2500,
    },
    # a nightly-style cron job that runs rarely
    {
        "project": "demo_ops",
        "id": "nightly_backup",
        "name": "Nightly backup",
        "trigger_type": "cron",
        "dialect": "openapi",
        "rate_per_minute": 2,
        "failure_ratio": 0.0,
        "mean_execution_ms": 4000,
        "initial_executions": 90,
    },
    # a flaky webhook consumer
    {
        "project": "demo_ops",
        "id": "sync-crm",
        "name": "Sync CRM",
        "trigger_type": "webhook",
        "rate_per_minute": 30,
        "failure_ratio": 0.12,
        "drift_amplitude": 0.1,
        "drift_period": 240,
        "mean_execution_ms": 600,
        "initial_executions": 800,
    },
]


def demo_simulator(seed: int | None = None) -> Simulator:
    sim = Simulator({DEMO_TOKEN}, seed=seed)
    for spec in DEMO_FUNCTIONS:
        sim.add(SimFunction(**spec))
    return sim


def load_scenario(path: Path, seed: int | None = None) -> Simulator:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    limit = data.get("rate_limit") or {}
    api_limit = SlidingLimit(
        int(limit.get("requests", MUDBASE_API_LIMIT)), parse_duration(limit.get("window", "15m"))
    )
    sim = Simulator(set(data.get("tokens", [])), seed=seed, api_limit=api_limit)
    sim.auth.users = dict(data.get("users") or {})
    for spec in data.get("functions", []):
        sim.add(SimFunction(**spec))
    return sim
