"""The Grafana dashboard: its structure, and every panel query run against the real Prometheus."""

import json
import re
import subprocess
import sys
from typing import Any

from tests.helpers import ROOT, wait_for
from tests.system.conftest import Stack

DASHBOARD = ROOT / "grafana" / "dashboards" / "mudbase-exporter.json"
VARIABLES = {"$project": ".*", "$function": ".*", "$__rate_interval": "1m"}


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in load()["panels"] if p["type"] != "row"]


def test_committed_json_is_what_the_builder_produces() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "grafana" / "build_dashboard.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_dashboard_structure() -> None:
    dashboard = load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["project"]["query"]["query"].startswith("label_values(")
    assert variables["function"]["query"]["query"].startswith("label_values(")
    text = DASHBOARD.read_text()
    # no hard-coded datasource UID anywhere: every datasource reference is the variable
    uids = set(re.findall(r'"uid": "([^"]*)"', text)) - {dashboard["uid"]}
    assert uids == {"${datasource}"}
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == [
        "Overview",
        "Per function",
        "Executions",
        "SLO and error budget",
        "Exporter health",
    ]
    for panel in panels():
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        assert panel["description"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            for rate in re.findall(r"rate\([^\[]+\[([^\]]+)\]", expr):
                assert rate == "$__rate_interval", (panel["title"], expr)
            if "mudbase_function" in expr and "mudbase_function_up, project" not in expr:
                assert 'project=~"$project"' in expr, (panel["title"], expr)
    # a panel reading recorded series says so, and shows a note instead of an empty graph
    needs_rules = [
        p["title"] for p in panels() if any("mudbase_function:" in t["expr"] for t in p["targets"])
    ]
    noted = [p["title"] for p in panels() if "noValue" in p["fieldConfig"]["defaults"]]
    assert noted == needs_rules
    assert len(needs_rules) == 9
    # a single number is coloured by what it means, never by Grafana's default (red from 80)
    for panel in panels():
        if panel["type"] == "stat":
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert steps[0]["value"] is None, panel["title"]
            assert all(step["value"] != 80 for step in steps), panel["title"]
    boxes = [(p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"]) for p in panels()]
    assert len(set(boxes)) == len(boxes)
    assert all(x + w <= 24 for x, _, w in boxes)


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def test_every_panel_query_returns_data(stack: Stack) -> None:
    queries = [(p["title"], substitute(t["expr"])) for p in panels() for t in p["targets"]]
    variable_queries = ["mudbase_function_up", 'mudbase_function_up{project=~".*"}']
    assert len(queries) > 20

    def all_answer() -> bool:
        return all(stack.prometheus.vector(expr) for _, expr in queries)

    wait_for(all_answer, 60, "every panel query to return data", step=1)
    for title, expr in queries:
        answer = stack.prometheus.query(expr)
        assert answer["status"] == "success", (title, expr)
        assert answer["data"]["result"], (title, expr)
    for expr in variable_queries:
        projects = {s["metric"]["project"] for s in stack.prometheus.vector(expr)}
        assert projects == {"sys"}
