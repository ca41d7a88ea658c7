"""The shipped rules, in the real Prometheus, page through the real Alertmanager."""

import re
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import wait_for
from tests.system.conftest import Stack
from tests.system.stack import PROMETHEUS_DIR, fast_rules


def test_fast_rules_change_only_durations() -> None:
    shipped = yaml.safe_load((PROMETHEUS_DIR / "mudbase-rules.yml").read_text())
    fast = fast_rules(shipped)
    durations = re.compile(r"(\d+(ms|[smhd]))+")
    assert [g["interval"] for g in fast["groups"]] == ["1s", "5s"]
    for shipped_group, fast_group in zip(shipped["groups"], fast["groups"], strict=True):
        for original, derived in zip(shipped_group["rules"], fast_group["rules"], strict=True):
            assert durations.sub("D", original["expr"]) == durations.sub("D", derived["expr"])
            for key in ("alert", "record", "labels", "annotations"):
                assert original.get(key) == derived.get(key)
    rules = {r.get("record") or r["alert"]: r for g in fast["groups"] for r in g["rules"]}
    page = rules["MudbaseFunctionSuccessRateLow"]
    assert "[" not in page["expr"].replace("[10s]", "")  # reads recorded windows only
    assert page["for"] == "2s"
    assert "offset 30s" in rules["mudbase_function:executions:increase1h"]["expr"]
    assert "[29983ms]" in rules["mudbase_function:executions:increase30m"]["expr"]
    assert "[5s] offset 1s" in rules["mudbase_function:executions:increase1m"]["expr"]
    assert "[4319983ms:5s]" in rules["mudbase_function:executions:increase3d"]["expr"]


def test_success_rate_drop_pages_and_resolves(stack: Stack) -> None:
    prometheus, receiver = stack.prometheus, stack.receiver
    wait_for(
        lambda: bool(
            prometheus.vector('mudbase_function:executions:increase1h{function="flaky"} > 0')
        ),
        30,
        "Prometheus to record the flaky function's executions",
    )
    assert not receiver.alerts("/mudbase-pages", "MudbaseFunctionSuccessRateLow", "firing")

    stack.simulator.put_function("sys", "flaky", failure_ratio=0.5)
    wait_for(
        lambda: bool(receiver.alerts("/mudbase-pages", "MudbaseFunctionSuccessRateLow", "firing")),
        60,
        "the page to reach the webhook",
    )
    (alert,) = receiver.alerts("/mudbase-pages", "MudbaseFunctionSuccessRateLow", "firing")[:1]
    assert alert["labels"]["project"] == "sys"
    assert alert["labels"]["function"] == "flaky"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == "mudbase"
    assert "instance" not in alert["labels"]  # a window belongs to the function, not a pod
    assert alert["annotations"]["summary"] == "Mudbase function sys/flaky is failing"
    match = re.match(
        r"Only (\d+(?:\.\d+)?)% of the executions of function flaky in project sys",
        alert["annotations"]["description"],
    )
    assert match, alert["annotations"]["description"]
    assert float(match.group(1)) < 99  # below the objective
    assert alert["annotations"]["runbook_url"].endswith("#mudbasefunctionsuccessratelow")
    # the steady function never paged (charge may, in its own test)
    assert all(
        a["labels"]["function"] in {"flaky", "charge"}
        for a in receiver.alerts("/mudbase-pages", "MudbaseFunctionSuccessRateLow", "firing")
    )

    stack.simulator.put_function("sys", "flaky", failure_ratio=0.0)
    wait_for(
        lambda: bool(
            receiver.alerts("/mudbase-pages", "MudbaseFunctionSuccessRateLow", "resolved")
        ),
        90,
        "the page to resolve",
    )


def test_a_function_failing_with_timeout_pages_and_the_notification_says_timeout(
    stack: Stack,
) -> None:
    prometheus, receiver = stack.prometheus, stack.receiver
    wait_for(
        lambda: bool(
            prometheus.vector('mudbase_function:executions:increase1h{function="charge"} > 0')
        ),
        30,
        "Prometheus to record the charge function's executions",
    )
    stack.simulator.put_function("sys", "charge", failure_ratio=0.6, error="Timeout")

    def page() -> list[dict[str, Any]]:
        return [
            a
            for a in receiver.alerts("/mudbase-pages", "MudbaseFunctionSuccessRateLow", "firing")
            if a["labels"]["function"] == "charge"
        ]

    wait_for(lambda: bool(page()), 60, "the charge function's page to reach the webhook")
    description = page()[0]["annotations"]["description"]
    why = r"Latest failure: Timeout \(trigger http, invoked by (trigger|manual|api_key|cron)\)\.$"
    assert re.search(why, description), description
    stack.simulator.put_function("sys", "charge", failure_ratio=0.0)


def test_broken_function_reaches_the_ticket_receiver(stack: Stack) -> None:
    receiver = stack.receiver
    wait_for(
        lambda: bool(receiver.alerts("/mudbase-tickets", "MudbaseFunctionPollFailing", "firing")),
        60,
        "the poll-failing ticket",
    )
    alert = receiver.alerts("/mudbase-tickets", "MudbaseFunctionPollFailing", "firing")[0]
    assert alert["labels"]["function"] == "broken"
    assert alert["labels"]["severity"] == "warning"


def test_compose_stack_uses_the_tested_files() -> None:
    root = PROMETHEUS_DIR.parent
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    mounted = [
        v.split(":")[0]
        for service in compose["services"].values()
        for v in service.get("volumes", [])
    ]
    for path in mounted:
        assert (root / Path(path)).exists(), path
    assert "./prometheus/prometheus.yml" in mounted
    assert "./prometheus/alertmanager.example.yml" in mounted
    assert "./prometheus/mudbase-rules.yml" in mounted
    prometheus = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["mudbase-rules.yml"]
    assert prometheus["scrape_configs"][0]["job_name"] == "mudbase"
