"""--web.config.file: validation with key paths, and bcrypt basic auth."""

import base64
from pathlib import Path

import bcrypt
import pytest
import trustme

from exporter.config import ConfigError
from exporter.webconfig import BasicAuth, allowed_san, load_web_config

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
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert caught.value.problems == [
        "tls_server_config.cert_file: cannot read '/nope.crt': no such file or directory"
    ]


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


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A server certificate, its key and a CA, as files, plus a directory and a binary file."""
    ca = trustme.CA()
    root = tmp_path_factory.mktemp("pem")
    server = ca.issue_cert("127.0.0.1")
    files = {"cert": root / "s.crt", "key": root / "s.key", "ca": root / "ca.crt"}
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    files["dir"] = root / "a-directory"
    files["dir"].mkdir()
    files["binary"] = root / "der.crt"
    files["binary"].write_bytes(b"\x30\x82\xff\x00")
    files["text"] = root / "not-pem.crt"
    files["text"].write_text("hello\n")
    return files


def tls(pem: dict[str, Path], extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {pem['cert']}\n  key_file: {pem['key']}\n" + "".join(
        f"  {line}\n" for line in extra.splitlines()
    )


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_web_config(write(tmp_path, text))
    return caught.value.problems


def test_a_file_shared_with_other_exporters_loads(pem: dict[str, Path], tmp_path: Path) -> None:
    config = load_web_config(
        write(
            tmp_path,
            tls(
                pem,
                f"client_ca_file: {pem['ca']}\n"
                "client_auth_type: RequireAndVerifyClientCert\n"
                "client_allowed_sans: [prometheus.example, 10.0.0.1]\n"
                "min_version: TLS12\nmax_version: TLS13\n"
                "cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256]\n"
                "prefer_server_cipher_suites: false\n"
                "curve_preferences: [CurveP256]",
            )
            + "http_server_config:\n  http2: false\n  headers:\n"
            "    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
            '    Content-Security-Policy: ""\n'
            "rate_limit: {interval: 0s, burst: 0}\n"
            f"basic_auth_users:\n  prometheus: {HASH}\n",
        )
    )
    assert config.tls_server_config is not None
    assert config.tls_server_config.openssl_ciphers == ["ECDHE-ECDSA-AES256-GCM-SHA384"]
    assert config.headers == {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"}


def test_relative_paths_are_relative_to_the_web_config_file(
    pem: dict[str, Path], tmp_path: Path
) -> None:
    web = pem["cert"].parent / "web.yml"
    web.write_text("tls_server_config: {cert_file: s.crt, key_file: s.key}\n")
    config = load_web_config(str(web))
    assert config.tls_server_config is not None
    assert config.tls_server_config.cert_file == pem["cert"]


def test_the_old_name_of_require_any_client_cert_is_accepted(
    pem: dict[str, Path], tmp_path: Path
) -> None:
    text = tls(pem, f"client_ca_file: {pem['ca']}\nclient_auth_type: RequireClientCert")
    config = load_web_config(write(tmp_path, text))
    assert config.tls_server_config is not None
    assert config.tls_server_config.client_auth_type == "RequireAnyClientCert"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "client_auth_type: RequireAnyClientCert",
            "tls_server_config: client_auth_type RequireAnyClientCert needs client_ca_file here: "
            "Python's ssl cannot require a client certificate without verifying it; set "
            "client_ca_file (certificates are then verified against it) or use NoClientCert",
        ),
        (
            "client_auth_type: VerifyClientCertIfGiven",
            "tls_server_config: client_auth_type VerifyClientCertIfGiven needs client_ca_file",
        ),
        (
            "client_auth_type: NoClientCert\nclient_allowed_sans: [a.example]",
            "tls_server_config: client_allowed_sans needs client_auth_type "
            "RequireAndVerifyClientCert (or RequireAnyClientCert): with NoClientCert a client may "
            "send no certificate",
        ),
        (
            "client_auth_type: Always",
            "tls_server_config.client_auth_type: Input should be 'NoClientCert', "
            "'RequestClientCert', 'RequireAnyClientCert', 'VerifyClientCertIfGiven' or "
            "'RequireAndVerifyClientCert'",
        ),
        (
            "cipher_suites: [TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA]",
            "tls_server_config.cipher_suites: TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA is insecure: "
            "exporter-toolkit refuses it too",
        ),
        (
            "cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]",
            "tls_server_config.cipher_suites: unknown cipher suite 'ECDHE-RSA-AES128-GCM-SHA256': "
            "use Go's names",
        ),
        (
            "cipher_suites: [TLS_AES_128_GCM_SHA256]",
            "tls_server_config: cipher_suites lists only TLS 1.3 suites, which cannot be chosen: "
            "list TLS 1.2 suites too, or set min_version: TLS13",
        ),
        (
            "curve_preferences: [P-256]",
            "tls_server_config.curve_preferences: unknown curve 'P-256': use X25519, CurveP256, "
            "CurveP384, CurveP521",
        ),
        (
            "min_version: TLS13\nmax_version: TLS12",
            "tls_server_config: min_version TLS13 is above max_version TLS12",
        ),
        (
            "cert: '-----BEGIN CERTIFICATE-----'",
            "tls_server_config.cert: inline PEM is not supported here: write it to a file and "
            "set cert_file",
        ),
        (
            "client_ca: '-----BEGIN CERTIFICATE-----'",
            "tls_server_config.client_ca: inline PEM is not supported here: write it to a file "
            "and set client_ca_file",
        ),
    ],
)
def test_tls_keys_python_cannot_honour_are_refused(
    pem: dict[str, Path], tmp_path: Path, extra: str, expected: str
) -> None:
    assert problems(tmp_path, tls(pem, extra)) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "http_server_config: {headers: {Content-Type: text/html}}",
            "http_server_config.headers: header 'Content-Type' cannot be set: exporter-toolkit "
            "allows only Content-Security-Policy, X-Frame-Options, X-Content-Type-Options, "
            "X-XSS-Protection, Strict-Transport-Security",
        ),
        (
            "http_server_config: {headers: {X-Frame-Options: allow}}",
            "http_server_config.headers: X-Frame-Options: 'allow' is not one of deny, sameorigin",
        ),
        (
            "http_server_config: {headers: {X-Content-Type-Options: sniff}}",
            "http_server_config.headers: X-Content-Type-Options: 'sniff' is not one of nosniff",
        ),
        (
            "rate_limit: {interval: 1s, burst: 5}",
            "rate_limit: rate limiting is not supported here: remove rate_limit (or set "
            "interval: 0)",
        ),
        ("http_server_config: {http3: true}", "http_server_config.http3: unknown key"),
    ],
)
def test_http_keys_and_headers_are_checked(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


@pytest.mark.parametrize(
    ("key", "file", "expected"),
    [
        ("cert_file", "dir", "cannot read '{dir}': is a directory"),
        ("key_file", "binary", "cannot read '{binary}': not UTF-8 text (byte 1)"),
        ("client_ca_file", "dir", "cannot read '{dir}': is a directory"),
        ("client_ca_file", "text", "'{text}' holds no PEM certificate ("),
        ("cert_file", "text", "'{text}' with key_file '{key}' is not a PEM certificate and its"),
    ],
)
def test_tls_files_that_do_not_load_are_named_with_the_reason(
    pem: dict[str, Path], tmp_path: Path, key: str, file: str, expected: str
) -> None:
    files = {"cert_file": pem["cert"], "key_file": pem["key"], "client_ca_file": pem["ca"]}
    files[key] = pem[file]
    text = (
        f"tls_server_config:\n  cert_file: {files['cert_file']}\n  key_file: {files['key_file']}\n"
        f"  client_ca_file: {files['client_ca_file']}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
    )
    found = problems(tmp_path, text)
    shown = expected.format(**{name: str(path) for name, path in pem.items()})
    assert len(found) == 1
    assert found[0].startswith(f"tls_server_config.{key}: {shown}"), found


def test_web_config_that_is_a_directory_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(tmp_path))
    assert caught.value.problems == [f"cannot read {str(tmp_path)!r}: is a directory"]
    binary = tmp_path / "web.yml"
    binary.write_bytes(b"\xff")
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(binary))
    assert caught.value.problems == [f"cannot read {str(binary)!r}: not UTF-8 text (byte 0)"]


@pytest.mark.parametrize(
    ("sans", "allowed"),
    [
        ((("DNS", "prometheus.example"),), True),
        ((("DNS", "Prometheus.example"),), False),  # exact, as in exporter-toolkit
        ((("email", "ops@example.com"),), True),
        ((("URI", "spiffe://example/prometheus"),), True),
        ((("IP Address", "2001:DB8:0:0:0:0:0:1\n"),), True),  # OpenSSL's IPv6 spelling
        ((("IP Address", "10.0.0.2"),), False),
        ((("DirName", "prometheus.example"),), False),
        ((), False),
    ],
)
def test_allowed_san_matches_dns_ip_email_and_uri(
    sans: tuple[tuple[str, str], ...], allowed: bool
) -> None:
    wanted = ["prometheus.example", "ops@example.com", "spiffe://example/prometheus", "2001:db8::1"]
    assert allowed_san({"subjectAltName": sans}, wanted) is allowed
