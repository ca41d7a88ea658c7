"""Suite-wide test setup."""

import asyncio
import inspect

import pytest


@pytest.fixture(autouse=True)
def _no_implicit_event_loop(request: pytest.FixtureRequest) -> None:
    """A synchronous test runs with no current event loop set. looptime's plugin asks the
    event loop policy for the current loop around every test; without this, Python 3.11's
    policy creates one for a synchronous test and never closes it, and the ResourceWarning
    of its collection fails whichever test runs next."""
    if not inspect.iscoroutinefunction(request.function):
        asyncio.set_event_loop(None)
