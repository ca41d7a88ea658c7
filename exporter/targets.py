"""What identifies a polled function, and the per-function settings from the config."""

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class TargetKey:
    project: str
    function: str

    def __str__(self) -> str:
        return f"{self.project}/{self.function}"


@dataclass(frozen=True)
class FunctionSettings:
    """Settings resolved from the config: function entry, else its target, else the default."""

    slo_objective: float
    expected_run_interval: float | None = None
