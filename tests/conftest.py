"""Test layers by directory: the tests under tests/system and tests/container get the `system`
and `container` markers. The default run leaves them out (addopts in pyproject.toml), so
`pytest` alone runs the fast layers; `.ci/run` then runs `pytest -m "system or container"`.
Run one slow layer with its marker: `pytest -m container tests/container`."""

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SLOW_LAYERS = ("system", "container")  # each is both a directory under tests/ and a marker


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(TESTS):
            continue
        layer = item.path.relative_to(TESTS).parts[0]
        if layer in SLOW_LAYERS:
            item.add_marker(layer)
