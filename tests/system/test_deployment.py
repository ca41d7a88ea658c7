"""What a deployment lives through, in the real Prometheus and Alertmanager: a rollout to a new
`instance`, and an outage of every function's polls for one cause (revoked credentials)."""

import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

from tests.helpers import SIM_TOKEN, http_get, http_json, run_exporter, run_simulator, wait_for
from tests.system.stack import (
    Prometheus,
    WebhookReceiver,
    run_alertmanager,
    run_prometheus,
    webhook_receiver,
    write_targets,
)

PAGES, TICKETS = "/mudbase-pages", "/mudbase-tickets"


def firing(receiver: WebhookReceiver, path: str, alertname: str) -> list[dict[str, Any]]:
    return receiver.alerts(path, alertname, "firing")


def address(url: str) -> str:
    return url.removeprefix("http://")


def test_a_rollout_keeps_one_window_per_function_and_keeps_paging(tmp_path: Path) -> None:
    with run_simulator() as simulator:
        simulator.put_function("sys", "flaky", rate_per_minute=1200, failure_ratio=0.5)
        simulator.put_function("sys", "steady", rate_per_minute=600, failure_ratio=0.0)
        config = tmp_path / "config.yaml"
        config.write_text(
            f"mudbase: {{url: '{simulator.url}', token: {SIM_TOKEN}, timeout: 500ms}}\n"
            "interval: 1s\ntargets:\n  - project: sys\n    functions: [flaky, steady]\n"
        )
        targets = tmp_path / "targets.json"
        with (
            run_exporter(config) as old,
            webhook_receiver() as receiver,
            run_alertmanager(tmp_path, receiver.port) as alertmanager,
        ):
            write_targets(targets, address(old.url))
            with run_prometheus(tmp_path, targets, alertmanager) as prometheus:
                wait_for(
                    lambda: bool(firing(receiver, PAGES, "MudbaseFunctionSuccessRateLow")),
                    60,
                    "the page for flaky before the rollout",
                )
                before = window(prometheus, "mudbase_function:executions:increase1h")
                with run_exporter(config) as new:  # the new pod: another address
                    write_targets(targets, address(old.url), address(new.url))
                    wait_for(
                        lambda: bool(prometheus.vector("count(up == 1) == 2")),
                        30,
                        "Prometheus to scrape both pods",
                    )
                    switched = time.time()  # the old pod goes once the new one is scraped
                    write_targets(targets, address(new.url))
                    old.stop()
                    wait_for(
                        lambda: bool(
                            prometheus.vector(
                                f'count_over_time(up{{instance="{address(new.url)}"}}[30s]) >= 20'
                            )
                        ),
                        60,
                        "20 scrapes of the new instance",
                    )
                    assert_one_series_per_function_and_firing(prometheus, switched - 5)
                    after = window(prometheus, "mudbase_function:executions:increase1h")
    assert after > 0.7 * before, (before, after)  # the window went on, it did not restart
    (page,) = firing(receiver, PAGES, "MudbaseFunctionSuccessRateLow")[:1]
    assert page["labels"]["function"] == "flaky"
    assert "instance" not in page["labels"]
    assert not receiver.alerts(PAGES, "MudbaseFunctionSuccessRateLow", "resolved")


def window(prometheus: Prometheus, record: str) -> float:
    (sample,) = prometheus.vector(f'{record}{{function="flaky"}}')
    return float(sample["value"][1])


def assert_one_series_per_function_and_firing(prometheus: Prometheus, since: float) -> None:
    """Every second since `since`: one series per function for each window, and the page
    firing without a gap."""
    now = time.time()
    for record in (
        "mudbase_function:failure_ratio:5m",
        "mudbase_function:failure_ratio:1h",
        "mudbase_function:executions:increase1h",
    ):
        counts = prometheus.matrix(f"count by (project, function) ({record})", since, now)
        assert {series["metric"]["function"] for series in counts} == {"flaky", "steady"}
        for series in counts:
            assert {value for _, value in series["values"]} == {"1"}, (record, series)
    alerts = prometheus.matrix(
        'ALERTS{alertname="MudbaseFunctionSuccessRateLow",alertstate="firing"}', since, now
    )
    (flaky,) = alerts
    assert flaky["metric"]["function"] == "flaky"
    times = [at for at, _ in flaky["values"]]
    assert times[-1] - times[0] >= 20, times
    assert len(times) == times[-1] - times[0] + 1, times  # not a second without it


def test_revoked_credentials_of_200_functions_make_one_notification(tmp_path: Path) -> None:
    functions = [
        {"project": "bulk", "id": f"fn{index:03d}", "rate_per_minute": 30} for index in range(200)
    ]
    with run_simulator(functions) as simulator:
        config = tmp_path / "config.yaml"
        config.write_text(
            f"mudbase: {{url: '{simulator.url}', token: {SIM_TOKEN}, timeout: 500ms}}\n"
            "interval: 1s\ntargets:\n  - project: bulk\n    functions: all\n"
        )
        with (
            run_exporter(config) as exporter,
            webhook_receiver() as receiver,
            run_alertmanager(tmp_path, receiver.port) as alertmanager,
            run_prometheus(tmp_path, address(exporter.url), alertmanager) as prometheus,
        ):
            wait_for(
                lambda: bool(prometheus.vector("count(mudbase_function_up == 1) == 200")),
                60,
                "Prometheus to see 200 functions up",
            )
            http_json("POST", f"{simulator.url}/_sim/auth", {"tokens": []})  # revoked
            wait_for(
                lambda: bool(
                    prometheus.vector(
                        'count(ALERTS{alertname="MudbaseFunctionPollFailing",'
                        'alertstate="firing"}) == 200'
                    )
                ),
                90,
                "every function's poll alert to fire in Prometheus",
            )
            wait_for(
                lambda: suppressed(alertmanager, "MudbaseFunctionPollFailing") == 200,
                30,
                "Alertmanager to inhibit the 200 poll alerts",
            )
            notifications = [body for _, body in receiver.received if body["status"] == "firing"]
    assert len(notifications) == 1, [n["groupLabels"] for n in notifications]
    (notification,) = notifications
    assert notification["groupLabels"] == {"alertname": "MudbaseAuthFailing", "job": "mudbase"}
    assert [a["labels"]["reason"] for a in notification["alerts"]] == ["auth"]


def suppressed(alertmanager: str, alertname: str) -> int:
    query = urllib.parse.urlencode({"filter": f'alertname="{alertname}"'})
    status, body = http_get(f"http://{alertmanager}/api/v2/alerts?{query}")
    assert status == 200
    alerts = json.loads(body)
    return sum(
        1 for a in alerts if a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]
    )
