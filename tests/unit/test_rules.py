"""The alert rules, checked and unit-tested with promtool (a missing promtool fails)."""

import re
import shutil
import subprocess

import pytest
import yaml

from tests.helpers import ROOT

RULES = ROOT / "prometheus" / "mudbase-rules.yml"
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.test.yml"))
README = (ROOT / "README.md").read_text()


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: apt-get install prometheus"
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False)


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


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
        assert f"### {name}" in README, name
        assert anchor == name.lower(), name
        assert f"| `{name}` |" in README, name
