"""Faults the simulator injects, switched at run time through `POST /_sim/faults`."""

import random
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal[
    "latency",  # answer normally after `latency` seconds
    "status",  # answer with HTTP `status` (401, 403, 404, 500, 502, 503, ...)
    "rate_limit",  # 429, with Retry-After: `retry_after` seconds unless it is None
    "malformed",  # 200 with a body that is not JSON
    "wrong_types",  # 200 with stats of the wrong JSON types
    "sparse",  # 200 with only totalExecutions in the stats
    "hang_body",  # 200, half the body, then silence for `latency` seconds
]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]


@dataclass
class Fault:
    kind: FaultKind
    status: int = 500
    retry_after: float | None = None
    latency: float = 0.0
    probability: float = 1.0
    remaining: int | None = None  # None: until cleared

    def fire(self, rng: random.Random) -> bool:
        """Whether this request gets the fault; counts down `remaining`."""
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.probability < 1.0 and rng.random() >= self.probability:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True


class FaultTable:
    """Faults by (project, function); `*` matches any project or function."""

    def __init__(self) -> None:
        self._faults: dict[tuple[str, str], Fault] = {}

    def set(self, project: str, function: str, fault: Fault) -> None:
        self._faults[(project, function)] = fault

    def clear(self, project: str | None = None, function: str | None = None) -> None:
        if project is None and function is None:
            self._faults.clear()
            return
        self._faults.pop((project or "*", function or "*"), None)

    def pick(self, project: str, function: str, rng: random.Random) -> Fault | None:
        for key in ((project, function), (project, "*"), ("*", function), ("*", "*")):
            fault = self._faults.get(key)
            if fault is not None and fault.fire(rng):
                return fault
        return None

    def describe(self) -> list[dict[str, object]]:
        return [
            {"project": p, "function": f, **vars(fault)} for (p, f), fault in self._faults.items()
        ]
