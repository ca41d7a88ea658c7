"""`--demo` listens on loopback unless told otherwise, and says how to open it up."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from exporter import cli
from exporter.demo import _exposure_note
from exporter.web import Limits


@dataclass
class DemoRuns:
    """What run_demo was given, run after run."""

    listens: list[tuple[str, int]] = field(default_factory=list)
    limits: list[Limits | None] = field(default_factory=list)


@pytest.fixture
def demo_runs(monkeypatch: pytest.MonkeyPatch) -> DemoRuns:
    """main() runs as from the shell; run_demo only records what it was given."""
    runs = DemoRuns()

    async def fake_run_demo(
        listen: tuple[str, int], web: Any = None, *, limits: Limits | None = None
    ) -> int:
        runs.listens.append(listen)
        runs.limits.append(limits)
        return 0

    monkeypatch.setattr(cli, "run_demo", fake_run_demo)
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)
    return runs


def test_demo_defaults_to_loopback(demo_runs: DemoRuns) -> None:
    assert cli.main(["--demo"]) == 0
    assert demo_runs.listens == [("127.0.0.1", 9717)]


def test_demo_listens_where_asked(demo_runs: DemoRuns) -> None:
    assert cli.main(["--demo", "--web.listen-address=:9800"]) == 0
    assert demo_runs.listens == [("0.0.0.0", 9800)]


def test_demo_takes_max_connections(demo_runs: DemoRuns) -> None:
    assert cli.main(["--demo", "--web.max-connections=3"]) == 0
    assert demo_runs.limits == [Limits(max_connections=3)]


def test_help_names_both_defaults() -> None:
    text = " ".join(cli.build_parser().format_help().split())
    assert "(default :9717; 127.0.0.1:9717 with --demo)" in text


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_demo_says_how_to_open_it_up(host: str) -> None:
    assert "add --web.listen-address=:9717 (every interface" in _exposure_note(host, 9717)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "example.internal"])
def test_an_open_demo_warns_it_has_no_authentication(host: str) -> None:
    assert "with no authentication" in _exposure_note(host, 9717)
