"""`--web.config.file`: TLS, client certificates, basic auth and response headers.

The file format is Prometheus exporter-toolkit's web configuration, so one file can serve every
exporter on a host:

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file's directory
      key_file: server.key
      min_version: TLS12             # TLS10 | TLS11 | TLS12 | TLS13
      max_version: TLS13
      client_ca_file: ca.crt         # with client_auth_type, for mutual TLS
      client_auth_type: RequireAndVerifyClientCert
      client_allowed_sans: [prometheus.example]
      cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
      prefer_server_cipher_suites: true
      curve_preferences: [X25519]
    http_server_config:
      http2: true
      headers:
        X-Frame-Options: deny
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\\n')

What each key does here, served by Python's `ssl` rather than Go's `crypto/tls`:

- `client_auth_type` (Python's `ssl` has no verify callback: it cannot accept a client
  certificate it has not verified, so the two Go modes that skip verification are approximated):
  - `NoClientCert` (the default): no certificate is asked for; every client is admitted.
  - `RequestClientCert`: no certificate is asked for; every client is admitted. Go asks for one
    but neither requires nor verifies it, so it admits the same clients. `client_ca_file` is
    loaded (checked) but not used.
  - `RequireAnyClientCert` (or its old name `RequireClientCert`): a certificate is required and,
    unlike Go, verified against `client_ca_file`, which it therefore needs: a client whose
    certificate that CA did not sign is refused (Go would admit it). Without `client_ca_file`
    the file is refused; use `RequireAndVerifyClientCert` with a CA, or `NoClientCert`.
  - `VerifyClientCertIfGiven`: a client may send no certificate; one it sends must verify
    against `client_ca_file` (required).
  - `RequireAndVerifyClientCert`: a certificate is required and must verify against
    `client_ca_file` (required). The one mode exporter-toolkit recommends for authentication.
- `client_allowed_sans` (with `RequireAnyClientCert` or `RequireAndVerifyClientCert` only, as in
  exporter-toolkit): after the handshake, the verified client certificate must hold one of these
  as a DNS name, IP address, e-mail address or URI (exact match; IP addresses compared as
  addresses); otherwise the connection is closed before any request is read.
- `min_version`, `max_version`: honoured.
- `cipher_suites`: Go's names of the suites `tls.CipherSuites()` lists, mapped to OpenSSL's and
  kept in order, for TLS 1.2 and below. TLS 1.3 suites are accepted and ignored, as Go ignores
  them (TLS 1.3 suites are not configurable). Go's insecure suites are refused, as there.
- `prefer_server_cipher_suites` (default true): the server's order wins
  (`OP_CIPHER_SERVER_PREFERENCE`).
- `curve_preferences` (X25519, CurveP256, CurveP384, CurveP521): one curve is enforced (OpenSSL
  then also needs a TLS 1.2 ECDSA certificate on that curve). Python's `ssl` can set only one:
  with several, OpenSSL's default groups stay, and a warning says so.
- `http_server_config.headers`: the headers exporter-toolkit allows (Content-Security-Policy,
  X-Frame-Options: deny | sameorigin, X-Content-Type-Options: nosniff, X-XSS-Protection,
  Strict-Transport-Security) are added to every response; any other header is refused, and a
  blank value leaves the header unset.
- `http_server_config.http2`: a preference; this server speaks HTTP/1.1 only (a note says so
  when the file asks for HTTP/2).
- Refused, each with a message naming the key: inline `cert`, `key` and `client_ca` (use the
  `_file` keys) and an enabled `rate_limit`.

Passwords are checked with bcrypt; an unknown user is checked against a dummy hash, so it takes
as long as a wrong password. Successful checks are cached (by a SHA-256 of user, password and
hash) so scrapes do not pay bcrypt's cost every time.
"""

import base64
import hashlib
import ipaddress
import os
import re
import ssl
import threading
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from exporter.config import ConfigError, FileReadError, key_path, read_text_file
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
_VERIFY_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,  # Go neither requires nor verifies: same clients admitted
    "RequireAnyClientCert": ssl.CERT_REQUIRED,  # verified: Python's ssl cannot skip it
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go's secure suites for TLS 1.0 to 1.2 (tls.CipherSuites()) and OpenSSL's names for them
_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
_TLS13_CIPHERS = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
}
_INSECURE_CIPHERS = {
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
}
_CURVES = {
    "X25519": "X25519",
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
}
# exporter-toolkit's allowed response headers, and the values allowed where it restricts them
_HEADERS: dict[str, tuple[str, ...]] = {
    "Content-Security-Policy": (),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": (),
    "Strict-Transport-Security": (),
}
_SAN_KINDS = {"DNS", "IP Address", "email", "URI"}
_COST = re.compile(r"^\$2[aby]\$(\d\d)\$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _refuse_inline(value: object, file_key: str) -> None:
    if value not in (None, ""):
        raise ValueError(f"inline PEM is not supported here: write it to a file and set {file_key}")


class TLSServerConfig(_Strict):
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: ClientAuth = "NoClientCert"
    client_allowed_sans: list[str] | None = None
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion = "TLS13"
    cipher_suites: list[str] = []
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] = []
    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None

    @field_validator("cert", "key", "client_ca")
    @classmethod
    def _no_inline_pem(cls, value: str | None, info: Any) -> None:
        _refuse_inline(value, f"{info.field_name}_file")

    @field_validator("client_auth_type", mode="before")
    @classmethod
    def _old_names(cls, value: object) -> object:
        if isinstance(value, str):
            return {"": "NoClientCert", "RequireClientCert": "RequireAnyClientCert"}.get(
                value, value
            )
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _known_ciphers(cls, names: list[str]) -> list[str]:
        for name in names:
            if name in _INSECURE_CIPHERS:
                raise ValueError(f"{name} is insecure: exporter-toolkit refuses it too")
            if name not in _CIPHERS and name not in _TLS13_CIPHERS:
                raise ValueError(f"unknown cipher suite {name!r}: use Go's names")
        return names

    @field_validator("curve_preferences")
    @classmethod
    def _known_curves(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in _CURVES:
                raise ValueError(f"unknown curve {name!r}: use {', '.join(_CURVES)}")
        return names

    @model_validator(mode="after")
    def _consistent(self) -> "TLSServerConfig":
        problem = _client_auth_problem(self) or _version_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def openssl_ciphers(self) -> list[str]:
        """The TLS 1.2-and-below suites, by OpenSSL's names, in the configured order."""
        return [_CIPHERS[name] for name in self.cipher_suites if name in _CIPHERS]


def _client_auth_problem(config: TLSServerConfig) -> str | None:
    mode, has_ca = config.client_auth_type, config.client_ca_file is not None
    if has_ca and mode == "NoClientCert":
        return (
            "client_ca_file is set but client_auth_type is NoClientCert: set "
            "client_auth_type (RequireAndVerifyClientCert for mutual TLS)"
        )
    if mode == "RequireAnyClientCert" and not has_ca:
        return (
            "client_auth_type RequireAnyClientCert needs client_ca_file here: Python's ssl "
            "cannot require a client certificate without verifying it; set client_ca_file "
            "(certificates are then verified against it) or use NoClientCert"
        )
    if mode in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not has_ca:
        return f"client_auth_type {mode} needs client_ca_file"
    if config.client_allowed_sans is not None and mode not in (
        "RequireAnyClientCert",
        "RequireAndVerifyClientCert",
    ):
        return (
            "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert (or "
            f"RequireAnyClientCert): with {mode} a client may send no certificate"
        )
    return None


def _version_problem(config: TLSServerConfig) -> str | None:
    if _VERSIONS[config.min_version] > _VERSIONS[config.max_version]:
        return f"min_version {config.min_version} is above max_version {config.max_version}"
    if config.cipher_suites and not config.openssl_ciphers and config.min_version != "TLS13":
        return (
            "cipher_suites lists only TLS 1.3 suites, which cannot be chosen: list TLS 1.2 "
            "suites too, or set min_version: TLS13"
        )
    return None


class HTTPServerConfig(_Strict):
    http2: bool = True
    headers: dict[str, str] = {}

    @field_validator("headers", mode="before")
    @classmethod
    def _allowed_headers(cls, headers: object) -> object:
        if headers is None:
            return {}
        if isinstance(headers, dict):
            for name, value in headers.items():
                _check_header(str(name), value)
        return headers

    @property
    def response_headers(self) -> dict[str, str]:
        """The headers to add to every response (blank ones are unset)."""
        return {name: value for name, value in self.headers.items() if value}


def _check_header(name: str, value: object) -> None:
    if name not in _HEADERS:
        raise ValueError(
            f"header {name!r} cannot be set: exporter-toolkit allows only {', '.join(_HEADERS)}"
        )
    allowed = _HEADERS[name]
    if allowed and value not in (*allowed, "", None):
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(allowed)}")


class RateLimit(_Strict):
    interval: str | int | None = None
    burst: int | None = None

    @model_validator(mode="after")
    def _disabled_only(self) -> "RateLimit":
        if self.interval not in (None, 0, "0", "0s"):
            raise ValueError(
                "rate limiting is not supported here: remove rate_limit (or set interval: 0)"
            )
        return self


class WebConfig(_Strict):
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    basic_auth_users: dict[str, str] = {}
    rate_limit: RateLimit | None = None

    @field_validator("http_server_config", "basic_auth_users", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        return {} if value is None else value

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise ValueError(f"user {user!r}: the password must be a bcrypt hash")
        return users

    @property
    def headers(self) -> dict[str, str]:
        """Headers added to every response."""
        return self.http_server_config.response_headers


def load_web_config(path: str) -> WebConfig:
    """Parse and validate the file, and build its TLS context once to check the files."""
    try:
        raw = yaml.safe_load(read_text_file(Path(path))) or {}
    except FileReadError as err:
        raise ConfigError(path, [str(err)]) from None
    except yaml.YAMLError as err:
        raise ConfigError(path, [f"not valid YAML: {err}"]) from None
    try:
        config = WebConfig.model_validate(raw)
    except ValidationError as err:
        problems = [f"{key_path(e['loc'])}: {_message(e)}" for e in err.errors()]
        raise ConfigError(path, problems) from None
    config = _relative_to(config, Path(path).parent)
    if config.tls_server_config is not None:
        try:
            tls_context(config.tls_server_config)
        except TLSFileError as err:
            raise ConfigError(path, [f"tls_server_config.{err}"]) from None
    _log_notes(config, raw)
    return config


def _relative_to(config: WebConfig, directory: Path) -> WebConfig:
    """File paths in the file are relative to its directory, as in exporter-toolkit."""
    tls = config.tls_server_config
    if tls is None:
        return config
    files = {
        key: directory / path
        for key in ("cert_file", "key_file", "client_ca_file")
        if (path := getattr(tls, key)) is not None
    }
    return config.model_copy(update={"tls_server_config": tls.model_copy(update=files)})


def _log_notes(config: WebConfig, raw: object) -> None:
    http = raw.get("http_server_config") if isinstance(raw, dict) else None
    if isinstance(http, dict) and http.get("http2") is True:
        log.info("web config: http2 is a preference; this server speaks HTTP/1.1 only")
    tls = config.tls_server_config
    if tls is not None and len(tls.curve_preferences) > 1:
        log.warning(
            "web config: Python's ssl sets one curve only: curve_preferences lists several, "
            "so OpenSSL's default curves are used",
            curve_preferences=tls.curve_preferences,
        )
    if tls is not None and tls.client_auth_type == "RequireAnyClientCert":
        log.warning(
            "web config: RequireAnyClientCert verifies client certificates against "
            "client_ca_file here (Python's ssl cannot skip verification)"
        )


def _message(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return error["msg"].removeprefix("Value error, ")


class TLSFileError(Exception):
    """A TLS file that does not load; str() is `KEY: what is wrong`."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")


def tls_context(config: TLSServerConfig) -> ssl.SSLContext:
    """The server context for this configuration. Raises TLSFileError naming the key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[config.min_version]
    context.maximum_version = _VERSIONS[config.max_version]
    _load_certificate(context, config)
    _load_client_ca(context, config)
    context.verify_mode = _VERIFY_MODES[config.client_auth_type]
    _set_ciphers(context, config)
    if len(config.curve_preferences) == 1:
        context.set_ecdh_curve(_CURVES[config.curve_preferences[0]])
    return context


def _readable(key: str, path: Path) -> None:
    try:
        read_text_file(path)
    except FileReadError as err:
        raise TLSFileError(key, str(err)) from None


def _load_certificate(context: ssl.SSLContext, config: TLSServerConfig) -> None:
    _readable("cert_file", config.cert_file)
    _readable("key_file", config.key_file)
    try:
        context.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as err:
        raise TLSFileError(
            "cert_file",
            f"{str(config.cert_file)!r} with key_file {str(config.key_file)!r} is not a PEM "
            f"certificate and its private key ({_ssl_reason(err)})",
        ) from None


def _load_client_ca(context: ssl.SSLContext, config: TLSServerConfig) -> None:
    if config.client_ca_file is None:
        return
    _readable("client_ca_file", config.client_ca_file)
    try:
        context.load_verify_locations(cafile=config.client_ca_file)
    except (OSError, ssl.SSLError) as err:
        raise TLSFileError(
            "client_ca_file",
            f"{str(config.client_ca_file)!r} holds no PEM certificate ({_ssl_reason(err)})",
        ) from None


def _set_ciphers(context: ssl.SSLContext, config: TLSServerConfig) -> None:
    if config.openssl_ciphers:
        try:
            context.set_ciphers(":".join(config.openssl_ciphers))
        except ssl.SSLError as err:
            raise TLSFileError(
                "cipher_suites", f"OpenSSL accepts none of them ({_ssl_reason(err)})"
            ) from None
    if not config.prefer_server_cipher_suites:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE


def _ssl_reason(err: OSError) -> str:
    reason = getattr(err, "reason", None) or err.strerror or str(err)
    return str(reason).lower().replace("_", " ")


def allowed_san(cert: dict[str, Any], allowed: list[str]) -> bool:
    """Whether a verified peer certificate (as getpeercert() returns it) holds an allowed SAN:
    a DNS name, IP address, e-mail address or URI, matched exactly (IP addresses as addresses)."""
    wanted = {_normal_san(value) for value in allowed}
    return any(
        kind in _SAN_KINDS and _normal_san(value) in wanted
        for kind, value in cert.get("subjectAltName", ())
    )


def _normal_san(value: str) -> str:
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        return value


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

    def admits(self, connection: ssl.SSLSocket) -> str | None:
        """After the handshake: None if the client may go on, else why it may not."""
        sans = self._config.client_allowed_sans
        if sans is None:
            return None
        cert = connection.getpeercert()
        if not cert:
            return "no verified client certificate"
        if not allowed_san(cert, sans):
            return "the client certificate holds none of client_allowed_sans"
        return None

    def _reload(self, stamp: object) -> None:
        self._stamp = stamp  # a broken file is reported once, not at every connection
        try:
            self._context = tls_context(self._config)
        except TLSFileError as err:
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
