"""A secret file re-read at run time that stops reading keeps the last good secret, and says why
in one log line; the poll goes on."""

import asyncio
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from exporter.auth import ApiKey, FileSecret, FileToken
from exporter.logs import configure_logging
from tests.helpers import deny_reading

GOOD = "good-token-1"


@pytest.fixture(autouse=True)
def _logging() -> Iterator[None]:
    configure_logging("info", "logfmt")
    yield
    logging.getLogger().handlers.clear()


def warnings(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The warnings logged, as structlog's event dicts."""
    return [
        r.msg for r in caplog.records if r.levelno == logging.WARNING and isinstance(r.msg, dict)
    ]


def bump(path: Path) -> None:
    """A later mtime, so the change is seen however coarse the file system's clock is."""
    later = path.stat().st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))


def make_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    bump(path)


def make_not_utf8(path: Path) -> None:
    path.write_bytes(b"\xff\xfe-rotated\n")
    bump(path)


def make_empty(path: Path) -> None:
    path.write_text("\n")
    bump(path)


def make_missing(path: Path) -> None:
    path.unlink()


BREAKS = {
    "is a directory": make_directory,
    "not UTF-8 text (byte 0)": make_not_utf8,
    "the file is empty": make_empty,
    "no such file or directory": make_missing,
}


@pytest.mark.parametrize("reason", sorted(BREAKS))
def test_broken_file_keeps_the_last_good_secret_and_logs_once(
    reason: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    path.write_text(GOOD + "\n")
    token = FileToken(path, SecretStr(GOOD))
    BREAKS[reason](path)
    for _ in range(3):  # every poll asks; the reason is logged once
        assert asyncio.run(token.headers()) == {"Authorization": f"Bearer {GOOD}"}
        rejected = {"Authorization": f"Bearer {GOOD}"}
        assert not asyncio.run(token.renew_after_unauthorized(rejected))
    lines = warnings(caplog)
    assert len(lines) == 1, lines
    assert lines[0]["event"] == "cannot re-read the secret file: keeping the last good secret"
    assert lines[0]["file"] == str(path)
    assert lines[0]["reason"] == reason
    assert GOOD not in str(lines[0])


def test_unreadable_file_says_permission_denied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "key"
    path.write_text(GOOD)
    key = ApiKey(SecretStr(GOOD), path)
    deny_reading(monkeypatch, path)
    path.write_text("rotated-key")  # a change, so the file is re-read
    bump(path)
    assert asyncio.run(key.headers()) == {"X-API-Key": GOOD}
    assert warnings(caplog)[0]["reason"] == "permission denied"


def test_a_fixed_file_is_read_again_and_a_new_break_is_logged_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "password"
    path.write_text(GOOD)
    secret = FileSecret(path, SecretStr(GOOD))
    make_directory(path)
    assert secret.current().get_secret_value() == GOOD
    shutil.rmtree(path)
    path.write_text("rotated-2\n")
    bump(path)
    assert secret.current().get_secret_value() == "rotated-2"
    make_not_utf8(path)
    assert secret.current().get_secret_value() == "rotated-2"
    lines = warnings(caplog)
    assert len(lines) == 2
    assert [line["reason"] for line in lines] == ["is a directory", "not UTF-8 text (byte 0)"]
