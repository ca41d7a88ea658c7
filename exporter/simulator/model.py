"""Simulated functions: executions accrue over time; stats come in either dialect."""

import math
import random
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Dialect = Literal["docs", "openapi"]
INVOKERS = ("trigger", "manual", "api_key", "cron")
KEPT_EXECUTIONS = 500
# What failed executions say when a function sets no `error`: texts shaped like real runtimes'
# (a stack trace's lines, IDs, addresses, counts), so the exporter's folding has work to do;
# each function fails in two of these ways (picked by its ID), as a real one fails in a few.
# A run longer than a second is a timeout.
ERRORS = (
    "TypeError: Cannot read properties of undefined (reading 'id')\n"
    "    at handler (/var/task/index.js:14:22)\n    at process.processTicksAndRejections",
    "MongoServerError: E11000 duplicate key error collection: app.orders index: _id_ dup key: "
    "{{ _id: ObjectId('{hex}') }}",
    "Error: connect ECONNREFUSED 10.0.{n}.17:5432",
    "Error: Request failed with status code 503",
    'ValidationError: order {hex} is missing field "customerId"',
)
TIMEOUT = "Timeout"


def iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Execution:
    id: str
    executed_at: float
    execution_ms: int
    success: bool
    trigger_type: str
    invoked_by: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "_id": self.id,
            "executedAt": iso(self.executed_at),
            "executionTime": self.execution_ms,
            "success": self.success,
            "triggerType": self.trigger_type,
            "triggerEvent": "create" if self.trigger_type == "document" else None,
            "invokedBy": self.invoked_by,
            "retryCount": 0,
        }
        if self.success:
            body["result"] = {"ok": True}
        else:
            body["error"] = self.error
        return {k: v for k, v in body.items() if v is not None}


@dataclass
class SimFunction:
    """One function. `failure_ratio` is the base; `drift_amplitude` moves it on a sine wave."""

    project: str
    id: str
    name: str = ""
    trigger_type: str = "http"
    active: bool = True
    dialect: Dialect = "docs"
    rate_per_minute: float = 0.0  # no executions on its own unless told
    failure_ratio: float = 0.02
    drift_amplitude: float = 0.0
    drift_period: float = 600.0
    mean_execution_ms: float = 120.0
    # a failure shows up this many seconds after it started, dated by its start (a run that
    # timed out): it lands in the log behind executions that started after it
    failure_delay: float = 0.0
    error: str | None = None  # what every failure says; None: a realistic text (ERRORS)
    initial_executions: int = 0
    total: int = 0
    successful: int = 0
    time_sum_ms: float = 0.0
    executions: deque[Execution] = field(default_factory=lambda: deque(maxlen=KEPT_EXECUTIONS))
    started: float = field(default_factory=time.time)
    advanced_to: float = field(default_factory=time.time)
    _carry: float = 0.0
    _serial: int = 0

    def __post_init__(self) -> None:
        self.name = self.name or self.id
        self.advanced_to = self.started
        if self.initial_executions and not self.total:
            self._seed_history(self.initial_executions)

    def _seed_history(self, count: int) -> None:
        ratio = self.current_failure_ratio(self.started)
        failed = round(count * ratio)
        self.total, self.successful = count, count - failed
        self.time_sum_ms = count * self.mean_execution_ms

    def current_failure_ratio(self, now: float) -> float:
        wave = math.sin(2 * math.pi * (now - self.started) / self.drift_period)
        return min(1.0, max(0.0, self.failure_ratio + self.drift_amplitude * wave))

    def advance(self, now: float, rng: random.Random) -> None:
        """Add the executions that happened between the last call and `now`."""
        elapsed = now - self.advanced_to
        if elapsed <= 0:
            return
        self._carry += elapsed * self.rate_per_minute / 60 if self.active else 0.0
        count = int(self._carry)
        self._carry -= count
        ratio = self.current_failure_ratio(now)
        for i in range(count):
            at = self.advanced_to + elapsed * (i + 1) / (count + 1)
            self._add(at, success=rng.random() >= ratio, rng=rng)
        self.advanced_to = now

    def _add(self, at: float, success: bool, rng: random.Random) -> None:
        millis = max(1, round(rng.expovariate(1 / self.mean_execution_ms)))
        self._serial += 1
        self.total += 1
        self.successful += int(success)
        self.time_sum_ms += millis
        invoker = "trigger" if rng.random() < 0.8 else rng.choice(INVOKERS)
        started = at if success else at - self.failure_delay
        execution = Execution(
            f"{self.id}-{self._serial:08d}",
            started,
            millis,
            success,
            self.trigger_type,
            invoker,
            None if success else self._error(millis, rng),
        )
        position = 0  # newest first: behind every execution that started after it
        while position < len(self.executions) and self.executions[position].executed_at > started:
            position += 1
        if position >= KEPT_EXECUTIONS:
            return  # older than everything kept: it falls out of the log at once
        if len(self.executions) == KEPT_EXECUTIONS:
            self.executions.pop()
        self.executions.insert(position, execution)

    def _error(self, millis: int, rng: random.Random) -> str:
        if self.error is not None:
            return self.error
        if millis > 1000:
            return TIMEOUT
        first = zlib.crc32(self.id.encode()) % len(ERRORS)
        text = ERRORS[(first + rng.randrange(2)) % len(ERRORS)]
        return text.format(hex=f"{rng.getrandbits(96):024x}", n=rng.randrange(256))

    @property
    def last_run(self) -> float | None:
        if self.executions:
            return self.executions[0].executed_at
        return self.started if self.total else None

    def stats_json(self, dialect: Dialect | None = None) -> dict[str, Any]:
        failed = self.total - self.successful
        avg = round(self.time_sum_ms / self.total, 2) if self.total else 0
        last = iso(self.last_run) if self.last_run is not None else None
        if (dialect or self.dialect) == "openapi":
            stats: dict[str, Any] = {
                "totalExecutions": self.total,
                "successfulExecutions": self.successful,
                "failedExecutions": failed,
                "avgExecutionTime": avg,
                "lastExecution": last,
            }
        else:
            rate = round(100 * self.successful / self.total, 2) if self.total else 0
            stats = {
                "totalExecutions": self.total,
                "successful": self.successful,
                "failed": failed,
                "successRate": rate,
                "avgExecutionTime": avg,
                "lastRun": last,
            }
        return {k: v for k, v in stats.items() if v is not None}

    def logs_json(self, limit: int, offset: int) -> dict[str, Any]:
        page = list(self.executions)[offset : offset + limit]
        return {
            "success": True,
            "data": {"executions": [e.to_json() for e in page], "stats": self.stats_json()},
        }

    def summary_json(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "name": self.name,
            "description": f"Simulated function {self.name}",
            "projectId": self.project,
            "isActive": self.active,
            "trigger": {"type": self.trigger_type},
            "stats": self.stats_json("openapi"),
            "createdAt": iso(self.started),
            "updatedAt": iso(self.advanced_to),
        }
