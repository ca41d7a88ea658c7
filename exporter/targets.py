"""What identifies a polled function, and the per-function settings from the config."""

import hashlib
import re
from collections.abc import Iterable
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
        """A listed function belongs to the replica its project/function hash picks."""
        return self._picks(f"{key.project}/{key.function}")

    def owns_project(self, project: str) -> bool:
        """A discovered project (`functions: all`) belongs whole to one replica: its listing
        is paid once, not by every replica."""
        return self._picks(project)

    def own_projects(self, selectors: Iterable["ProjectSelector"]) -> list["ProjectSelector"]:
        """The discovered projects this replica lists."""
        return [s for s in selectors if self.owns_project(s.project)]

    def _picks(self, name: str) -> bool:
        if self.total == 1:
            return True
        digest = hashlib.sha256(name.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.total == self.index


@dataclass(frozen=True)
class FunctionInfo:
    """What the list endpoint says a function is (for mudbase_function_info)."""

    name: str
    trigger_type: str
    active: bool | None


@dataclass(frozen=True)
class ProjectSelector:
    """`functions: all` for a project: which of its listed functions to poll."""

    project: str
    settings: FunctionSettings
    include: re.Pattern[str] | None = None
    exclude: re.Pattern[str] | None = None
    active_only: bool = False

    def selects(self, function_id: str, name: str, active: bool | None) -> bool:
        """Include and exclude match the function ID or its name (re.search)."""
        if self.active_only and active is False:
            return False
        if self.include is not None and not (
            self.include.search(function_id) or self.include.search(name)
        ):
            return False
        return not (
            self.exclude is not None
            and (self.exclude.search(function_id) or self.exclude.search(name))
        )
