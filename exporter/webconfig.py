"""`--web.config.file`: TLS and basic auth for the exporter's own endpoints.

The file format is Prometheus exporter-toolkit's web configuration:

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      min_version: TLS12             # TLS10 | TLS11 | TLS12 | TLS13
      client_ca_file: ca.crt         # with client_auth_type, for mutual TLS
      client_auth_type: RequireAndVerifyClientCert
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\\n')

Passwords are checked with bcrypt; an unknown user is checked against a dummy hash, so it takes
as long as a wrong password. Successful checks are cached (by a SHA-256 of user, password and
hash) so scrapes do not pay bcrypt's cost every time.
"""

import base64
import hashlib
import os
import re
import ssl
import threading
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from exporter.config import ConfigError, key_path
from exporter.logs import get_logger

log = get_logger("exporter.webconfig")

TLSVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_COST = re.compile(r"^\$2[aby]\$(\d\d)\$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSServerConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: ClientAuth = "NoClientCert"
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion = "TLS13"

    @model_validator(mode="after")
    def _client_auth_needs_a_ca(self) -> "TLSServerConfig":
        verifies = self.client_auth_type in (
            "VerifyClientCertIfGiven",
            "RequireAndVerifyClientCert",
        )
        if self.client_ca_file is not None and self.client_auth_type == "NoClientCert":
            raise ValueError(
                "client_ca_file is set but client_auth_type is NoClientCert: set "
                "client_auth_type (RequireAndVerifyClientCert for mutual TLS)"
            )
        if verifies and self.client_ca_file is None:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        return self


class WebConfig(_Strict):
    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = {}

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise ValueError(f"user {user!r}: the password must be a bcrypt hash")
        return users


def load_web_config(path: str) -> WebConfig:
    """Parse and validate the file, and build its TLS context once to check the files."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(path, [f"cannot read file: {err.strerror or err}"]) from None
    except yaml.YAMLError as err:
        raise ConfigError(path, [f"not valid YAML: {err}"]) from None
    try:
        config = WebConfig.model_validate(raw)
    except ValidationError as err:
        problems = [f"{key_path(e['loc'])}: {_message(e)}" for e in err.errors()]
        raise ConfigError(path, problems) from None
    if config.tls_server_config is not None:
        try:
            tls_context(config.tls_server_config)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(path, [f"tls_server_config: {err}"]) from None
    return config


def _message(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return error["msg"].removeprefix("Value error, ")


def tls_context(config: TLSServerConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[config.min_version]
    context.maximum_version = _VERSIONS[config.max_version]
    context.load_cert_chain(config.cert_file, config.key_file)
    if config.client_ca_file is not None:
        context.load_verify_locations(cafile=config.client_ca_file)
    context.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_OPTIONAL,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[config.client_auth_type]
    return context


class TLSContextSource:
    """The server's TLS context, rebuilt when its certificate, key or client CA file changes
    (checked at each new connection, as exporter-toolkit does): a renewed certificate is served
    without a restart. Files that no longer load keep the previous context, and say why."""

    def __init__(self, config: TLSServerConfig) -> None:
        self._config = config
        self._files = [config.cert_file, config.key_file, config.client_ca_file]
        self._lock = threading.Lock()
        self._stamp = self._files_stamp()
        self._context = tls_context(config)

    def current(self) -> ssl.SSLContext:
        stamp = self._files_stamp()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._reload(stamp)
        return self._context

    def _reload(self, stamp: object) -> None:
        self._stamp = stamp  # a broken file is reported once, not at every connection
        try:
            self._context = tls_context(self._config)
        except (OSError, ssl.SSLError) as err:
            log.warning(
                "TLS files changed but do not load: serving the previous ones", error=str(err)
            )
            return
        log.info("TLS certificate reloaded", cert_file=str(self._config.cert_file))

    def _files_stamp(self) -> object:
        stamps = []
        for file in self._files:
            try:
                info = os.stat(file) if file is not None else None
            except OSError:
                info = None
            stamps.append((info.st_mtime_ns, info.st_size, info.st_ino) if info else None)
        return tuple(stamps)


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        # an unknown user is checked against a hash as costly as the costliest real one
        costs = [int(m.group(1)) for h in users.values() if (m := _COST.match(h))]
        self._dummy = bcrypt.hashpw(b"unknown user", bcrypt.gensalt(rounds=max(costs, default=4)))
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BasicAuth(users={sorted(self._users)!r})"

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def allows(self, header: str | None) -> bool:
        user, password = _credentials(header)
        hashed = self._users.get(user, self._dummy)
        key = hashlib.sha256(b"\0".join((user.encode(), password, hashed))).digest()
        with self._lock:
            if key in self._verified:
                return user in self._users
        # always one bcrypt check: an unknown user costs the same as a wrong password
        try:
            valid = bcrypt.checkpw(password, hashed) and user in self._users
        except ValueError:  # bcrypt refuses passwords longer than 72 bytes
            return False
        if valid:
            with self._lock:
                self._verified.add(key)
        return valid


def _credentials(header: str | None) -> tuple[str, bytes]:
    if not header or not header.startswith("Basic "):
        return "", b""
    try:
        decoded = base64.b64decode(header[6:], validate=True)
    except ValueError:
        return "", b""
    user, _, password = decoded.partition(b":")
    return user.decode("utf-8", "replace"), password
