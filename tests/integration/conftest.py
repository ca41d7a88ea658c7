from collections.abc import Iterator

import pytest

from tests.helpers import SimulatorProcess, run_simulator


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorProcess]:
    with run_simulator() as sim:
        yield sim


@pytest.fixture(autouse=True)
def _within_mudbase_limit(simulator: SimulatorProcess) -> Iterator[None]:
    """Every test starts with fresh request counts, and ends having sent nothing Mudbase's
    per-IP limit (2000 per 15 minutes, which the simulator enforces) would refuse."""
    simulator.reset_requests()
    yield
    assert simulator.refused() == 0, "the simulator refused requests over Mudbase's limit"
