"""What the benchmarks share: a simulator process on loopback, small HTTP helpers, RSS, and a
baseline server process sending fixed bytes from memory.

    python -m bench.common serve PLAIN_FILE GZIP_FILE   # the baseline server, on its own
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent


def post(url: str, body: object) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def rss_mb(pid: int | str = "self") -> float:
    """The resident memory of this process, or of the process `pid`, in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) the process `pid` has used, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after the command name
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_simulator(
    token: str,
    functions: list[dict[str, Any]],
    *,
    seed: int = 1,
    latency: str = "0",
    rate_limit: int | None = None,
    rate_limit_window: str = "15m",
) -> tuple[subprocess.Popen[str], str]:
    """A simulator process serving these functions; the process and its base URL. It enforces
    Mudbase's per-IP limit (2000 per 15 minutes) unless `rate_limit` says otherwise (0: none,
    for benchmarks that lift the exporter's budget to measure something else), over a window
    of `rate_limit_window` (shorter for a benchmark that runs time faster)."""
    scenario = Path(f"/tmp/bench-scenario-{os.getpid()}.json")
    scenario.write_text(json.dumps({"tokens": [token], "functions": functions}))
    return _listening(
        "exporter.simulator.cli",
        "--listen-address",
        "127.0.0.1:0",
        "--scenario",
        str(scenario),
        "--seed",
        str(seed),
        "--latency",
        latency,
        *([] if rate_limit is None else ["--rate-limit", str(rate_limit)]),
        "--rate-limit-window",
        rate_limit_window,
    )


def _listening(module: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`python -m module args` in another process, once it printed "listening on URL"."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    url = process.stdout.readline().split("listening on ")[1].strip()
    return process, url


def serve_metrics(render: Callable[[], bytes], port: int) -> ThreadingHTTPServer:
    """A scrape target in a thread of this process on loopback: each GET answers `render()`
    as Prometheus text."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _FixedBody(BaseHTTPRequestHandler):
    """The same bytes for every GET: the plain body, or the gzip body when gzip is accepted."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as the exporter's handler
    bodies: ClassVar[dict[bool, bytes]] = {}

    def do_GET(self) -> None:
        gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
        body = self.bodies[gzipped]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_fixed(plain: Path, gzipped: Path) -> None:
    """A minimal threading HTTP server sending these files' bytes from memory; prints its URL."""
    _FixedBody.bodies = {False: plain.read_bytes(), True: gzipped.read_bytes()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FixedBody)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


def start_fixed_server(plain: bytes, gzipped: bytes) -> tuple[subprocess.Popen[str], str]:
    """The baseline: another process serving these bodies from memory; the process, its URL."""
    directory = Path(tempfile.mkdtemp(prefix="bench-fixed-"))
    (directory / "plain").write_bytes(plain)
    (directory / "gzip").write_bytes(gzipped)
    return _listening("bench.common", "serve", str(directory / "plain"), str(directory / "gzip"))


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve_fixed(Path(sys.argv[2]), Path(sys.argv[3]))
