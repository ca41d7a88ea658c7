from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import (
    SIM_TOKEN,
    ExporterProcess,
    SimulatorProcess,
    run_exporter,
    run_simulator,
)
from tests.system.stack import (
    Prometheus,
    WebhookReceiver,
    run_alertmanager,
    run_prometheus,
    webhook_receiver,
)

CONFIG = """\
mudbase: {{url: "{url}", token: {token}, timeout: 500ms}}
interval: 1s
slo_objective: 0.99
targets:
  - project: sys
    functions:
      - flaky
      - {{id: steady, expected_run_interval: 1h}}
      - broken
      - charge
"""


@dataclass
class Stack:
    simulator: SimulatorProcess
    exporter: ExporterProcess
    prometheus: Prometheus
    receiver: WebhookReceiver


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("stack")
    with run_simulator() as simulator:
        simulator.put_function("sys", "flaky", rate_per_minute=1200, failure_ratio=0.0)
        simulator.put_function("sys", "steady", rate_per_minute=600, failure_ratio=0.001)
        simulator.put_function("sys", "broken", rate_per_minute=60)
        # fails now and then (0.5%, far within its objective) from the start: the dashboard's
        # failures-by-error-class panel has data at once; its own test makes it page
        simulator.put_function("sys", "charge", rate_per_minute=1200, failure_ratio=0.005)
        simulator.set_fault("sys", "broken", "status", status=500)
        config = workdir / "config.yaml"
        config.write_text(CONFIG.format(url=simulator.url, token=SIM_TOKEN))
        with (
            run_exporter(config) as exporter,
            webhook_receiver() as receiver,
            run_alertmanager(workdir, receiver.port) as alertmanager,
            run_prometheus(workdir, exporter.url.removeprefix("http://"), alertmanager) as prom,
        ):
            yield Stack(simulator, exporter, prom, receiver)
