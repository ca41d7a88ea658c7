"""Log lines: logfmt and JSON, and secrets redacted at every level and in tracebacks."""

import json
import logging

import pytest

from exporter.logs import REDACTOR, configure_logging, get_logger

SECRET = "eyJhbGciOiJIUzI1NiJ9.secret-payload"


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    yield
    logging.getLogger().handlers.clear()


def test_logfmt_has_level_logger_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "logfmt")
    get_logger("exporter.test").info("poll failed", target="p/f", reason="auth")
    get_logger("exporter.test").debug("hidden at info")
    line = capsys.readouterr().err.strip()
    assert line.startswith("ts=")
    assert 'level=info logger=exporter.test msg="poll failed" target=p/f reason=auth' in line
    assert "hidden" not in line


def test_json_lines_parse(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "json")
    get_logger("exporter.test").debug("detail", n=3)
    record = json.loads(capsys.readouterr().err)
    assert record["msg"] == "detail"
    assert record["level"] == "debug"
    assert record["n"] == 3


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_secrets_are_redacted_everywhere(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", fmt)  # type: ignore[arg-type]
    REDACTOR.add(SECRET)
    log = get_logger("exporter.test")
    log.debug(f"message with {SECRET}", header=f"Bearer {SECRET}", nested={"t": SECRET})
    logging.getLogger("httpx").warning("third-party %s", SECRET)
    try:
        _fail()
    except RuntimeError:
        log.exception("failed")
    output = capsys.readouterr().err
    assert SECRET not in output
    assert output.count("<redacted>") >= 5


def _fail() -> None:
    raise RuntimeError(f"boom {SECRET}")
