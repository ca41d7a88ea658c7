"""What identifies a polled function, and the per-function settings from the config."""

import hashlib
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


@dataclass(frozen=True)
class Shard:
    """This replica's share of the functions: `--shard` of `--total-shards`.

    A stable hash of project/function picks each function's shard, so every replica agrees with
    no coordination, and adding functions never moves the others (kube-state-metrics' scheme).
    """

    index: int = 0
    total: int = 1

    def owns(self, key: TargetKey) -> bool:
        if self.total == 1:
            return True
        digest = hashlib.sha256(f"{key.project}/{key.function}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.total == self.index
