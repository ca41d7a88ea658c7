"""The README's metrics tables are checked against metrics.py and the live exposition."""

import re
from pathlib import Path

from exporter import metrics
from tests.helpers import ROOT, SimulatorProcess, run_exporter, write_config

ROW = re.compile(r"^\| `(mudbase_[a-z0-9_]+)` \| (gauge|counter|histogram) \|", re.MULTILINE)


def readme_metrics() -> dict[str, str]:
    return dict(ROW.findall((ROOT / "README.md").read_text()))


def test_readme_lists_exactly_the_metrics_in_metrics_py() -> None:
    documented = readme_metrics()
    declared = {spec.name: spec.type for spec in metrics.ALL_METRICS}
    assert documented == declared


def test_readme_metrics_match_the_live_exposition(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    simulator.put_function("readme", "ok", initial_executions=5)
    simulator.put_function("readme", "failing", initial_executions=5)
    simulator.set_fault("readme", "failing", "status", status=500)
    config = write_config(tmp_path, simulator.url, {"readme": ["ok", "failing"]})
    with run_exporter(config) as exporter:
        text = exporter.metrics_text()
    exposed = dict(re.findall(r"^# TYPE (mudbase_\S+) (\S+)$", text, re.MULTILINE))
    assert exposed == readme_metrics()
    simulator.clear_faults("readme", "failing")
