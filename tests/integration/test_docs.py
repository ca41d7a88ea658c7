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


LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to -."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_of_the_docs_leads_somewhere() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []
