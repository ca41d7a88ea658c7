from collections.abc import Iterator

import pytest

from tests.helpers import SimulatorProcess, run_simulator


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorProcess]:
    with run_simulator() as sim:
        yield sim
