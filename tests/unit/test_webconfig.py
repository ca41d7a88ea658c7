"""--web.config.file: validation with key paths, and bcrypt basic auth."""

import base64
from pathlib import Path

import bcrypt
import pytest

from exporter.config import ConfigError
from exporter.webconfig import BasicAuth, load_web_config

HASH = bcrypt.hashpw(b"s3cret-pass", bcrypt.gensalt(rounds=4)).decode()


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return str(path)


def test_invalid_web_config_names_every_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tls_server_config:\n  cert_file: a.crt\n  min_version: TLS99\n  color: blue\n"
        "basic_auth_users:\n  alice: plaintext\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    problems = caught.value.problems
    assert "tls_server_config.key_file: required key is missing" in problems
    assert "tls_server_config.color: unknown key" in problems
    assert any(
        p.startswith("tls_server_config.min_version: Input should be 'TLS10'") for p in problems
    )
    assert "basic_auth_users: user 'alice': the password must be a bcrypt hash" in problems


def test_missing_certificate_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "tls_server_config: {cert_file: /nope.crt, key_file: /nope.key}\n")
    with pytest.raises(ConfigError, match=r"tls_server_config: \[Errno 2\] No such file"):
        load_web_config(path)


def test_basic_auth_accepts_only_the_right_password() -> None:
    auth = BasicAuth({"prometheus": HASH})
    assert auth.allows(header("prometheus", "s3cret-pass"))
    assert auth.allows(header("prometheus", "s3cret-pass"))  # cached
    assert not auth.allows(header("prometheus", "wrong"))
    assert not auth.allows(header("mallory", "s3cret-pass"))
    assert not auth.allows(None)
    assert not auth.allows("Bearer abc")
    assert not auth.allows("Basic !!!not-base64")
    assert "s3cret" not in repr(auth)


def test_unknown_user_costs_one_bcrypt_check_like_a_wrong_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    auth = BasicAuth({"prometheus": HASH})
    auth.allows(header("nobody", "x"))
    auth.allows(header("prometheus", "x"))
    assert len(calls) == 2
    assert calls[0] != HASH.encode()  # the unknown user was checked against the dummy hash


def test_cache_never_lets_a_wrong_password_in() -> None:
    auth = BasicAuth({"a": HASH})
    assert auth.allows(header("a", "s3cret-pass"))
    assert not auth.allows(header("a", "s3cret-pass2"))


def test_a_password_too_long_for_bcrypt_is_refused_not_a_crash() -> None:
    auth = BasicAuth({"prometheus": HASH})
    assert not auth.allows(header("prometheus", "x" * 100))


def test_the_dummy_hash_costs_as_much_as_the_costliest_real_one() -> None:
    costly = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=6)).decode()
    auth = BasicAuth({"a": HASH, "b": costly})
    assert auth._dummy.startswith(b"$2b$06$")


def test_a_client_ca_without_a_client_auth_type_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c}\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert caught.value.problems == [
        "tls_server_config: client_ca_file is set but client_auth_type is NoClientCert: set "
        "client_auth_type (RequireAndVerifyClientCert for mutual TLS)"
    ]
