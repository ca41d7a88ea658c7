"""Where the API token comes from, and what happens after a 401.

A 401 is never retried blindly: the token source gets one chance to produce a different
credential (a token file rewritten by a secret rotation); if it cannot, the poll fails as `auth`.
"""

import os
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from exporter.config import read_token_file


class TokenSource(Protocol):
    def headers(self) -> dict[str, str]:
        """The auth headers for the next request."""

    def renew_after_unauthorized(self) -> bool:
        """Try to get a different credential after a 401; True if there is one to try."""


class StaticToken:
    """A token given inline or by environment variable: nothing to renew."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    def renew_after_unauthorized(self) -> bool:
        return False


class FileToken:
    """A token in a file, re-read whenever the file changes (a rotated Kubernetes secret)."""

    def __init__(self, path: Path, initial: SecretStr) -> None:
        self._path = path
        self._token = initial
        self._stamp = self._file_stamp()

    def __repr__(self) -> str:
        return f"FileToken(path={str(self._path)!r})"

    def headers(self) -> dict[str, str]:
        if self._file_stamp() != self._stamp:
            self._reload()
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    def renew_after_unauthorized(self) -> bool:
        return self._reload()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self._path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_ino)

    def _reload(self) -> bool:
        """Re-read the file; True if it now holds a different, non-empty token."""
        self._stamp = self._file_stamp()
        try:
            token = read_token_file(self._path)
        except OSError:
            return False
        if not token or token == self._token.get_secret_value():
            return False
        self._token = SecretStr(token)
        return True
