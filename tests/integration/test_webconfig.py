"""TLS, mutual TLS and basic auth on the exporter's endpoints, with real TLS clients."""

import http.client
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
import trustme
from prometheus_client import CollectorRegistry

from exporter.exposition import CachedExposition
from exporter.web import ExporterHTTPServer, start_http_server
from exporter.webconfig import TLSContextSource, load_web_config
from tests.helpers import ClientOptions, SimulatorProcess, run_exporter, wait_for, write_config

PASSWORD = "scrape-pass-42"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("prometheus@example")
    files = {
        "cert": tmp_path / "server.crt",
        "key": tmp_path / "server.key",
        "ca": tmp_path / "ca.crt",
        "client": tmp_path / "client.pem",
    }
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return files


@pytest.fixture
def secured(
    simulator: SimulatorProcess,
    tmp_path: Path,
    tls_files: dict[str, Path],
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    mutual = getattr(request, "param", False)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    client_auth = (
        f"  client_ca_file: {tls_files['ca']}\n  client_auth_type: RequireAndVerifyClientCert\n"
        if mutual
        else ""
    )
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {tls_files['cert']}\n  key_file: {tls_files['key']}\n"
        f"{client_auth}basic_auth_users:\n  prometheus: {hashed}\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    )
    simulator.put_function("tls", "fn")
    config = write_config(tmp_path, simulator.url, {"tls": ["fn"]})
    options = ClientOptions(
        str(tls_files["ca"]), str(tls_files["client"]), ("prometheus", PASSWORD)
    )
    with run_exporter(config, "--web.config.file", str(web), options=options) as exporter:
        yield exporter.url


def client(tls_files: dict[str, Path], with_cert: bool = False) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(tls_files["ca"]))
    if with_cert:
        context.load_cert_chain(str(tls_files["client"]))
    return httpx.Client(verify=context, timeout=5)


def test_tls_with_basic_auth(secured: str, tls_files: dict[str, Path]) -> None:
    with client(tls_files) as http:
        ok = http.get(f"{secured}/metrics", auth=("prometheus", PASSWORD))
        assert ok.status_code == 200
        assert "mudbase_function_up" in ok.text
        for auth in (None, ("prometheus", "wrong"), ("root", PASSWORD)):
            denied = http.get(f"{secured}/metrics", auth=auth)
            assert denied.status_code == 401
            assert denied.headers["WWW-Authenticate"] == 'Basic realm="mudbase-exporter"'
            assert "mudbase_function_up" not in denied.text
            assert denied.headers["X-Frame-Options"] == "deny"  # the web config's headers
        assert ok.headers["X-Frame-Options"] == "deny"
        assert http.get(f"{secured}/", auth=("prometheus", "nope")).status_code == 401
        assert http.post(f"{secured}/-/reload").status_code == 401
    plain = secured.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError), httpx.Client(timeout=5) as http:
        http.get(f"{plain}/metrics", auth=("prometheus", PASSWORD))
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=5) as http:  # untrusted CA
        http.get(f"{secured}/metrics")


@pytest.mark.parametrize("secured", [True], indirect=True)
def test_mutual_tls_requires_a_client_certificate(secured: str, tls_files: dict[str, Path]) -> None:
    with pytest.raises(httpx.HTTPError), client(tls_files) as http:
        http.get(f"{secured}/metrics", auth=("prometheus", PASSWORD))
    with client(tls_files, with_cert=True) as http:
        response = http.get(f"{secured}/metrics", auth=("prometheus", PASSWORD))
        assert response.status_code == 200
        assert "mudbase_function_up" in response.text


def served_certificate(url: str, tls_files: dict[str, Path]) -> bytes:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(tls_files["ca"]))
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_a_renewed_certificate_is_served_without_a_restart(
    secured: str, tls_files: dict[str, Path], ca: trustme.CA
) -> None:
    first = served_certificate(secured, tls_files)
    renewed = ca.issue_cert("127.0.0.1", "localhost")
    renewed.private_key_pem.write_to_path(str(tls_files["key"]))
    renewed.cert_chain_pems[0].write_to_path(str(tls_files["cert"]))
    expected = ssl.PEM_cert_to_DER_cert(renewed.cert_chain_pems[0].bytes().decode())
    assert expected != first
    wait_for(
        lambda: served_certificate(secured, tls_files) == expected, 5, "the renewed certificate"
    )
    tls_files["cert"].write_text("not a certificate")  # a broken renewal keeps the last good one
    assert served_certificate(secured, tls_files) == expected


# exporter-toolkit's keys, served by the exporter's own HTTP server (in this process, on
# 127.0.0.1) to real TLS clients.

NOT_FOUND = "/no-such-page"  # any route answers; a 404 does not depend on the routes' contents


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Server files, the client CA, and client certificates: signed by it with a DNS, e-mail or
    IP SAN, and one from another CA."""
    root = tmp_path_factory.mktemp("pki")
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = {name: root / name for name in ("server.crt", "server.key", "ca.crt")}
    server.cert_chain_pems[0].write_to_path(str(files["server.crt"]))
    server.private_key_pem.write_to_path(str(files["server.key"]))
    ca.cert_pem.write_to_path(str(files["ca.crt"]))
    clients = {
        "dns": ca.issue_cert("prometheus.example"),
        "email": ca.issue_cert("prometheus@example"),
        "ip": ca.issue_cert("10.0.0.7"),
        "foreign": trustme.CA().issue_cert("prometheus.example"),
    }
    for name, cert in clients.items():
        files[name] = root / f"{name}.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(files[name]))
    return files


@pytest.fixture
def serve(pki: dict[str, Path], tmp_path: Path) -> Iterator[Callable[[str], int]]:
    """Start a server with this web config (after its TLS files); returns its port."""
    servers: list[ExporterHTTPServer] = []

    def start(extra: str) -> int:
        web = tmp_path / f"web{len(servers)}.yml"
        web.write_text(
            f"tls_server_config:\n  cert_file: {pki['server.crt']}\n"
            f"  key_file: {pki['server.key']}\n{extra}"
        )
        config = load_web_config(str(web))
        assert config.tls_server_config is not None
        server = ExporterHTTPServer(
            ("127.0.0.1", 0),
            CachedExposition(list, lambda: 0, CollectorRegistry()),
            landing_page=lambda query: b"",
            ready=lambda: True,
            reload=lambda: None,
            tls=TLSContextSource(config.tls_server_config),
            headers=config.headers,
        )
        start_http_server(server)
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def client_context(pki: dict[str, Path], cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca.crt"]))
    if cert is not None:
        context.load_cert_chain(str(pki[cert]))
    return context


def fetch(port: int, context: ssl.SSLContext) -> http.client.HTTPResponse | None:
    """A GET over TLS; None if the server refused the client (at or after the handshake)."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        connection.request("GET", NOT_FOUND)
        response = connection.getresponse()
        response.read()
    except OSError:  # ssl.SSLError, a reset, or a connection closed without an answer
        return None
    finally:
        connection.close()
    return response


MODES = {  # client_auth_type -> admitted with (no certificate, a CA-signed one, a foreign one)
    "NoClientCert": (True, True, True),
    "RequestClientCert": (True, True, True),
    "RequireAnyClientCert": (False, True, False),  # Go admits the foreign one: see webconfig
    "VerifyClientCertIfGiven": (True, True, False),
    "RequireAndVerifyClientCert": (False, True, False),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_each_client_auth_type_with_real_clients(
    mode: str, serve: Callable[[str], int], pki: dict[str, Path]
) -> None:
    ca_line = "" if mode == "NoClientCert" else f"  client_ca_file: {pki['ca.crt']}\n"
    port = serve(f"  client_auth_type: {mode}\n{ca_line}")
    admitted = tuple(
        fetch(port, client_context(pki, cert)) is not None for cert in (None, "dns", "foreign")
    )
    assert admitted == MODES[mode]


@pytest.mark.parametrize("mode", ["RequireAndVerifyClientCert", "RequireAnyClientCert"])
def test_client_allowed_sans_admit_only_matching_certificates(
    mode: str, serve: Callable[[str], int], pki: dict[str, Path]
) -> None:
    port = serve(
        f"  client_auth_type: {mode}\n  client_ca_file: {pki['ca.crt']}\n"
        "  client_allowed_sans: [prometheus.example, 10.0.0.7]\n"
    )
    for cert, admitted in (("dns", True), ("ip", True), ("email", False), (None, False)):
        response = fetch(port, client_context(pki, cert))
        assert (response is not None) is admitted, cert
        assert response is None or response.status == 404


def test_configured_headers_are_on_every_response(
    serve: Callable[[str], int], pki: dict[str, Path]
) -> None:
    port = serve(
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        "    Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: ''\n"
    )
    response = fetch(port, client_context(pki))
    assert response is not None
    assert response.status == 404
    assert response.getheader("X-Frame-Options") == "deny"
    assert response.getheader("Strict-Transport-Security") == "max-age=31536000"
    assert response.getheader("X-XSS-Protection") is None  # blank: unset


def negotiated(port: int, context: ssl.SSLContext) -> tuple[str, str] | None:
    """The cipher and version of a handshake, or None if it failed."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            cipher = tls.cipher()
    except OSError:
        return None
    assert cipher is not None
    return cipher[0], cipher[1]


def tls12_client(pki: dict[str, Path], ciphers: str) -> ssl.SSLContext:
    context = client_context(pki)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    return context


@pytest.mark.parametrize(
    ("prefer_server", "expected"),
    [(True, "ECDHE-ECDSA-AES256-GCM-SHA384"), (False, "ECDHE-ECDSA-AES128-GCM-SHA256")],
)
def test_cipher_suites_and_the_server_order(
    serve: Callable[[str], int], pki: dict[str, Path], prefer_server: bool, expected: str
) -> None:
    port = serve(
        "  max_version: TLS12\n  cipher_suites:\n"
        "    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n"
        "    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n"
        f"  prefer_server_cipher_suites: {str(prefer_server).lower()}\n"
    )
    client = tls12_client(pki, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
    assert negotiated(port, client) == (expected, "TLSv1.2")
    assert negotiated(port, tls12_client(pki, "ECDHE-ECDSA-CHACHA20-POLY1305")) is None


def test_max_version_is_honoured(serve: Callable[[str], int], pki: dict[str, Path]) -> None:
    port = serve("  max_version: TLS12\n")
    assert negotiated(port, client_context(pki)) is not None
    only13 = client_context(pki)
    only13.minimum_version = ssl.TLSVersion.TLSv1_3
    assert negotiated(port, only13) is None


def test_one_curve_preference_is_enforced(
    serve: Callable[[str], int], pki: dict[str, Path]
) -> None:
    port = serve("  min_version: TLS13\n  curve_preferences: [CurveP384]\n")
    for curve, works in (("secp384r1", True), ("prime256v1", False), ("X25519", False)):
        client = client_context(pki)
        client.set_ecdh_curve(curve)
        assert (negotiated(port, client) is not None) is works, curve
