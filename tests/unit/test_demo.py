"""`--demo` listens on loopback unless told otherwise, and says how to open it up."""

from typing import Any

import pytest

from exporter import cli
from exporter.demo import _exposure_note


@pytest.fixture
def demo_listen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """main() runs as from the shell; run_demo only records the address it was given."""
    seen: list[tuple[str, int]] = []

    async def fake_run_demo(listen: tuple[str, int], web: Any = None) -> int:
        seen.append(listen)
        return 0

    monkeypatch.setattr(cli, "run_demo", fake_run_demo)
    monkeypatch.setattr(cli, "configure_logging", lambda *args: None)
    return seen


def test_demo_defaults_to_loopback(demo_listen: list[tuple[str, int]]) -> None:
    assert cli.main(["--demo"]) == 0
    assert demo_listen == [("127.0.0.1", 9717)]


def test_demo_listens_where_asked(demo_listen: list[tuple[str, int]]) -> None:
    assert cli.main(["--demo", "--web.listen-address=:9800"]) == 0
    assert demo_listen == [("0.0.0.0", 9800)]


def test_help_names_both_defaults() -> None:
    text = " ".join(cli.build_parser().format_help().split())
    assert "(default :9717; 127.0.0.1:9717 with --demo)" in text


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_demo_says_how_to_open_it_up(host: str) -> None:
    assert "add --web.listen-address=:9717 (every interface" in _exposure_note(host, 9717)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "example.internal"])
def test_an_open_demo_warns_it_has_no_authentication(host: str) -> None:
    assert "with no authentication" in _exposure_note(host, 9717)
