"""TLS, mutual TLS and basic auth on the exporter's endpoints, with real TLS clients."""

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
import trustme

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
