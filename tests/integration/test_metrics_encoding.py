"""/metrics over sockets: the gzip answer (deflate segments compressed apart, in one gzip member)
reads, with Python's gzip, a first-member-only reader and curl, as the plain answer."""

import gzip
import shutil
import subprocess
import urllib.request
from pathlib import Path

from tests.helpers import (
    SimulatorProcess,
    first_gzip_member,
    run_exporter,
    wait_for,
    write_config,
)


def fetch(url: str, encoding: str | None) -> tuple[dict[str, str], bytes]:
    headers = {"Accept-Encoding": encoding} if encoding else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return dict(r.headers), bytes(r.read())


def function_part(text: bytes) -> bytes:
    """Up to the first self-metric family (those change from one scrape to the next)."""
    cut = text.find(b"# HELP mudbase_exporter_")
    assert cut > 0
    return text[:cut]


def test_gzip_answer_reads_as_the_plain_body(simulator: SimulatorProcess, tmp_path: Path) -> None:
    for function in ("a", "b", "c"):
        simulator.put_function("encoding", function, initial_executions=20)
    config = write_config(tmp_path, simulator.url, {"encoding": ["a", "b", "c"]}, interval="1h")
    with run_exporter(config) as exporter:
        url = f"{exporter.url}/metrics"
        exporter.wait_value("mudbase_function_up", "encoding", "c", lambda v: v == 1)
        seen: dict[str, bytes] = {}

        def steady_pair() -> bool:  # plain, gzip, plain: the same state all along
            before = function_part(fetch(url, None)[1])
            headers, seen["gzip"] = fetch(url, "gzip")
            assert headers["Content-Encoding"] == "gzip"
            assert int(headers["Content-Length"]) == len(seen["gzip"])  # whole, not chunked
            assert headers["Vary"] == "Accept-Encoding"
            seen["plain"] = fetch(url, None)[1]
            return before == function_part(seen["plain"])

        wait_for(steady_pair, 15, "two scrapes of the same state")
        decoded = gzip.decompress(seen["gzip"])
        assert function_part(decoded) == function_part(seen["plain"])
        assert b"mudbase_exporter_build_info" in decoded
        assert first_gzip_member(seen["gzip"]) == decoded
        head = urllib.request.Request(url, method="HEAD", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(head, timeout=10) as answer:  # the length, no body
            assert int(answer.headers["Content-Length"]) > 0
            assert answer.read() == b""
        curl = shutil.which("curl")
        if curl:  # curl, in HTTP/1.1 and HTTP/1.0
            for version in ("--http1.1", "--http1.0"):
                read = subprocess.run(
                    [curl, "-sf", version, "--compressed", url],
                    capture_output=True,
                    check=True,
                    timeout=10,
                ).stdout
                assert function_part(read) == function_part(seen["plain"])
