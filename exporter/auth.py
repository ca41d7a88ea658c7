"""Credentials on requests: a bearer token (inline, env or file), an API key, or a session.

A 401 is never retried blindly: the credential gets one chance to produce a different one (a
token file rewritten by a secret rotation, a refreshed session); if it cannot, the poll fails as
`auth`. The session credential (login and refresh) lives in `exporter.session`.
"""

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from exporter.config import FileReadError, read_token_file
from exporter.logs import REDACTOR, get_logger

log = get_logger("exporter.auth")


class Credential(Protocol):
    async def headers(self) -> dict[str, str]:
        """The auth headers for the next request (may log in first)."""

    async def renew_after_unauthorized(self, rejected: Mapping[str, str]) -> bool:
        """After a 401 with `rejected` headers: True if there is a different credential to try."""

    def expiry(self) -> float | None:
        """Unix time the current credential expires, when known."""


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, read without verifying it (for the expiry gauge only)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class StaticToken:
    """A token given inline or by environment variable: nothing to renew."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    async def renew_after_unauthorized(self, rejected: Mapping[str, str]) -> bool:
        return False

    def expiry(self) -> float | None:
        return jwt_expiry(self._token.get_secret_value())


class FileSecret:
    """A secret in a file, re-read whenever the file changes (a rotated Kubernetes secret).

    A file that no longer reads (a directory, not UTF-8, unreadable, gone, empty) keeps the last
    good secret, and says why in one log line (once, until the reason changes)."""

    def __init__(self, path: Path, initial: SecretStr) -> None:
        self._path = path
        self.value = initial
        self._stamp = self._file_stamp()
        self._problem: str | None = None

    def current(self) -> SecretStr:
        if self._file_stamp() != self._stamp:
            self.reload()
        return self.value

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self._path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_ino)

    def reload(self) -> bool:
        """Re-read the file; True if it now holds a different, non-empty secret."""
        self._stamp = self._file_stamp()
        try:
            value = read_token_file(self._path)
        except FileReadError as err:
            self._report(err.reason)
            return False
        if not value:
            self._report("the file is empty")
            return False
        self._problem = None
        if value == self.value.get_secret_value():
            return False
        self.value = SecretStr(value)
        REDACTOR.rotate(f"file:{self._path}", value)
        return True

    def _report(self, reason: str) -> None:
        if reason != self._problem:
            self._problem = reason
            log.warning(
                "cannot re-read the secret file: keeping the last good secret",
                file=str(self._path),
                reason=reason,
            )


class FileToken:
    """A bearer token in a file: re-read when the file changes, and once after a 401."""

    def __init__(self, path: Path, initial: SecretStr) -> None:
        self._file = FileSecret(path, initial)
        self._path = path

    def __repr__(self) -> str:
        return f"FileToken(path={str(self._path)!r})"

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._file.current().get_secret_value()}"}

    async def renew_after_unauthorized(self, rejected: Mapping[str, str]) -> bool:
        changed = self._file.reload()
        return changed or (await self.headers()) != dict(rejected)

    def expiry(self) -> float | None:
        return jwt_expiry(self._file.value.get_secret_value())


class ApiKey:
    """An API key sent as X-API-Key (inline, env, or a file re-read when it changes)."""

    def __init__(self, key: SecretStr, path: Path | None = None) -> None:
        self._file = FileSecret(path, key) if path is not None else None
        self._key = key

    def __repr__(self) -> str:
        return "ApiKey(<redacted>)"

    async def headers(self) -> dict[str, str]:
        key = self._file.current() if self._file is not None else self._key
        return {"X-API-Key": key.get_secret_value()}

    async def renew_after_unauthorized(self, rejected: Mapping[str, str]) -> bool:
        return self._file is not None and self._file.reload()

    def expiry(self) -> float | None:
        return None
