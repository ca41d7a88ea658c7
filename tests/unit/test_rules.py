"""The alert rules, checked and unit-tested with promtool (a missing promtool fails)."""

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT

RULES = ROOT / "prometheus" / "mudbase-rules.yml"
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.test.yml"))
ALERTS_DOC = (ROOT / "docs" / "alerts.md").read_text()
RAW_COUNTS = re.compile(
    r"\bmudbase_function_(executions|failed_executions|observed_executions_total"
    r"|unobserved_executions_total)\b"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: apt-get install prometheus"
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False)


def groups() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return loaded


def alerts() -> list[dict[str, object]]:
    return [rule for group in groups() for rule in group["rules"] if "alert" in rule]


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(test_file: object) -> None:
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_and_documented() -> None:
    tested = "\n".join(p.read_text() for p in RULE_TESTS)
    for rule in alerts():
        name = str(rule["alert"])
        assert re.fullmatch(r"Mudbase[A-Z][A-Za-z]+", name)
        assert f"alertname: {name}" in tested, name
        labels, annotations = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict)
        assert labels["severity"] in {"critical", "warning"}
        assert isinstance(annotations, dict)
        assert {"summary", "description", "runbook_url"} <= set(annotations)
        anchor = str(annotations["runbook_url"]).split("#", 1)[1]
        assert f"### {name}" in ALERTS_DOC, name
        assert anchor == name.lower(), name
        assert f"| `{name}` |" in ALERTS_DOC, name
        assert str(annotations["runbook_url"]).startswith(
            "https://github.com/mudbase/mudbase-exporter/blob/main/docs/alerts.md#"
        )


def test_raw_counts_are_read_only_by_the_merge_into_one_series_per_function() -> None:
    """Mudbase's counts are read once, instantly, and merged by job, project and function (a
    rollout's new `instance` neither resets nor doubles a window); everything else reads the
    recorded series. The execution counters drive no window (their coverage is partial)."""
    readers = [
        (rule.get("record") or rule.get("alert"), rule["expr"])
        for group in groups()
        for rule in group["rules"]
        if RAW_COUNTS.search(rule["expr"])
    ]
    assert [name for name, _ in readers] == [
        "mudbase_function:stats_executions:max",
        "mudbase_function:stats_failed_executions:max",
    ]
    for _, expr in readers:
        assert expr.startswith("max by (job, project, function) (")
        assert "[" not in expr


def test_every_window_reads_whole_blocks_and_ends_a_second_short() -> None:
    """Prometheus 2.x ranges include their start: [30m] over blocks recorded every minute
    reads 31 of them at an aligned time. Each window's range ends a second short."""
    windows = re.compile(r"mudbase_function:\w+:increase(1m|5m)\[(?P<range>[^\]]+)\]")
    ranges = [
        match["range"]
        for group in groups()
        for rule in group["rules"]
        for match in windows.finditer(rule["expr"])
    ]
    assert len(ranges) >= 10
    for window in ranges:
        assert re.fullmatch(r"[0-9dhm]*59s(:5m)?", window), window


def test_every_function_level_series_is_recorded_once_and_documented() -> None:
    records = [rule["record"] for group in groups() for rule in group["rules"] if "record" in rule]
    assert len(records) == len(set(records))
    assert len(records) <= 20  # the old rules recorded 21 per function
    for record in records:
        assert f"`{record}`" in ALERTS_DOC, record
