"""Suite-wide test setup.

Test layers by directory: the tests under tests/system and tests/container get the `system`
and `container` markers. The default run leaves them out (addopts in pyproject.toml), so
`pytest` alone runs the fast layers; `.ci/run` then runs `pytest -m "system or container"`.
Run one slow layer with its marker: `pytest -m container tests/container`.
"""

import asyncio
import inspect
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


@pytest.fixture(autouse=True)
def _no_implicit_event_loop(request: pytest.FixtureRequest) -> None:
    """A synchronous test runs with no current event loop set. looptime's plugin asks the
    event loop policy for the current loop around every test; without this, Python 3.11's
    policy creates one for a synchronous test and never closes it, and the ResourceWarning
    of its collection fails whichever test runs next."""
    if not inspect.iscoroutinefunction(request.function):
        asyncio.set_event_loop(None)
