"""The docs' references are checked against the code: the metrics tables against metrics.py and
the live exposition, the configuration table against the config models."""

import re
from pathlib import Path

from pydantic import BaseModel

from exporter import metrics
from exporter.config import Config, FunctionSpec, MudbaseSettings, TargetSpec
from tests.helpers import ROOT, SimulatorProcess, run_exporter, write_config

KEY_ROW = re.compile(r"^\| `([a-z_.\[\]]+)` \|", re.MULTILINE)
ROW = re.compile(r"^\| `(mudbase_[a-z0-9_]+)` \| (gauge|counter|histogram) \|", re.MULTILINE)


def documented_metrics() -> dict[str, str]:
    return dict(ROW.findall((ROOT / "docs" / "metrics.md").read_text()))


def test_the_metrics_reference_lists_exactly_the_metrics_in_metrics_py() -> None:
    documented = documented_metrics()
    declared = {spec.name: spec.type for spec in metrics.ALL_METRICS}
    assert documented == declared


def test_documented_metrics_match_the_live_exposition(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("readme", "ok", initial_executions=5)
    simulator.put_function("readme", "failing", initial_executions=5)
    simulator.set_fault("readme", "failing", "status", status=500)
    config = write_config(tmp_path, simulator.url, {"readme": ["ok", "failing"]})
    with run_exporter(config) as exporter:
        text = exporter.metrics_text()
    exposed = dict(re.findall(r"^# TYPE (mudbase_\S+) (\S+)$", text, re.MULTILINE))
    assert exposed == documented_metrics()
    simulator.clear_faults("readme", "failing")


def keys_of(model: type[BaseModel], prefix: str) -> set[str]:
    return {prefix + name for name in model.model_fields}


def test_the_configuration_reference_lists_exactly_the_keys_the_config_accepts() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    reference = text.split("## The configuration file", 1)[1].split("\n## ", 1)[0]
    documented = set(KEY_ROW.findall(reference))
    accepted = (
        keys_of(Config, "")
        | keys_of(MudbaseSettings, "mudbase.")
        | keys_of(TargetSpec, "targets[].")
        | keys_of(FunctionSpec, "targets[].functions[].")
    ) - {"mudbase"}
    assert documented == accepted
