"""Real processes for the integration tests: the simulator and the exporter, over sockets."""

import base64
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from exporter.app import Exporter

SIM_TOKEN = "sim-token-5f2b9c1e7d"
ROOT = Path(__file__).resolve().parent.parent


class FakeTime:
    """Stands in for the `time` module of a module under test: a clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ClientOptions:
    """How a test reaches a secured exporter: its CA, client certificate and basic auth."""

    ca_file: str | None = None
    client_cert: str | None = None
    basic_auth: tuple[str, str] | None = None

    def context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.client_cert:
            context.load_cert_chain(self.client_cert)
        return context

    def headers(self) -> dict[str, str]:
        if self.basic_auth is None:
            return {}
        token = base64.b64encode(":".join(self.basic_auth).encode()).decode()
        return {"Authorization": f"Basic {token}"}


def http_get(
    url: str, timeout: float = 5.0, options: ClientOptions | None = None
) -> tuple[int, bytes]:
    options = options or ClientOptions()
    request = urllib.request.Request(url, headers=options.headers())
    try:
        with urllib.request.urlopen(
            request, timeout=timeout, context=options.context()
        ) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())


def http_json(method: str, url: str, body: object | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def wait_for(check: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def fn_labels(project: str, function: str) -> tuple[tuple[str, str], ...]:
    return (("function", function), ("project", project))


@dataclass
class SimulatorProcess:
    process: subprocess.Popen[str]
    url: str

    def put_function(self, project: str, function: str, **options: Any) -> None:
        http_json(
            "POST", f"{self.url}/_sim/functions", {"project": project, "id": function, **options}
        )

    def set_fault(self, project: str, function: str, kind: str, **options: Any) -> None:
        body = {"project": project, "function": function, "kind": kind, **options}
        http_json("POST", f"{self.url}/_sim/faults", body)

    def clear_faults(self, project: str, function: str) -> None:
        http_json("DELETE", f"{self.url}/_sim/faults?project={project}&function={function}")

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = http_json("GET", f"{self.url}/_sim/state")
        return result

    def requests(self) -> dict[str, int]:
        """Requests received since the last reset, by endpoint (list, logs, login, refresh)."""
        counts: dict[str, int] = self.state()["requests"]
        return counts

    def refused(self) -> int:
        """Requests refused with a 429 by the per-IP limit since the last reset."""
        return int(self.state()["rate_limit"]["refused"])

    def reset_requests(self) -> None:
        """Count afresh: request counts, the per-IP limit's windows and its refusals."""
        http_json("POST", f"{self.url}/_sim/requests/reset", {})

    def stats(self, project: str, function: str) -> dict[str, Any]:
        for entry in self.state()["functions"]:
            if entry["project"] == project and entry["id"] == function:
                stats: dict[str, Any] = entry["stats"]
                return stats
        raise KeyError(f"{project}/{function}")


@contextmanager
def run_simulator(
    functions: Sequence[dict[str, Any]] = (),
    rate_limit: tuple[int, str] | None = None,
    users: dict[str, str] | None = None,
) -> Iterator[SimulatorProcess]:
    """A simulator process serving `functions` (and `users`, for login mode); Mudbase's per-IP
    limit unless `rate_limit` (requests, window) says otherwise."""
    body: dict[str, Any] = {
        "tokens": [SIM_TOKEN],
        "functions": list(functions),
        "users": users or {},
    }
    if rate_limit is not None:
        body["rate_limit"] = {"requests": rate_limit[0], "window": rate_limit[1]}
    scenario = Path(tempfile.mkdtemp()) / "scenario.yaml"
    scenario.write_text(json.dumps(body))  # JSON is YAML
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter.simulator.cli",
            "--listen-address",
            "127.0.0.1:0",
            "--scenario",
            str(scenario),
            "--seed",
            "7",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    assert match, f"simulator did not start: {line!r}"
    try:
        yield SimulatorProcess(process, match.group(1))
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)


@dataclass
class ExporterProcess:
    process: subprocess.Popen[str]
    url: str
    log_path: Path
    options: ClientOptions = field(default_factory=ClientOptions)

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(f"{self.url}{path}", options=self.options)

    def metrics_text(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200
        return body.decode()

    def metrics(self) -> Samples:
        return parse_metrics(self.metrics_text())

    def wait_metrics(
        self, predicate: Callable[[Samples], bool], what: str, timeout: float = 15.0
    ) -> Samples:
        """The first scrape whose samples satisfy `predicate`. The self-metrics in a scrape can
        be up to a second and a half older than its per-function part (they are collected once
        a second): a test reading a self-metric after a per-function change waits for it."""
        seen: list[Samples] = []

        def satisfied() -> bool:
            seen.append(self.metrics())
            return predicate(seen[-1])

        wait_for(satisfied, timeout, what)
        return seen[-1]

    def value(self, name: str, project: str, function: str) -> float | None:
        return self.metrics().get((name, fn_labels(project, function)))

    def wait_value(
        self,
        name: str,
        project: str,
        function: str,
        predicate: Callable[[float | None], bool],
        timeout: float = 15.0,
    ) -> float | None:
        wait_for(
            lambda: predicate(self.value(name, project, function)),
            timeout,
            f"{name}{{{project}/{function}}} to change",
        )
        return self.value(name, project, function)

    def logs(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 5.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def write_config(
    directory: Path,
    sim_url: str,
    targets: dict[str, list[str]],
    *,
    interval: str = "1s",
    extra: str = "",
    mudbase_extra: str = "",
) -> Path:
    lines = [
        "mudbase:",
        f"  url: {sim_url}",
        f"  token: {SIM_TOKEN}",
        "  timeout: 500ms",
        mudbase_extra,
        f"interval: {interval}",
        extra,
        "targets:",
    ]
    for project, functions in targets.items():
        lines.append(f"  - project: {project}")
        lines.append(f"    functions: [{', '.join(functions)}]")
    path = directory / "config.yaml"
    path.write_text("\n".join(line for line in lines if line) + "\n")
    return path


def config_check(config: Path) -> str:
    """What `mudbase-exporter --config.check` prints for `config` (it must pass), both streams."""
    check = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", "--config.file", str(config)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return check.stdout + check.stderr


@contextmanager
def run_exporter(
    config: Path,
    *args: str,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    options: ClientOptions | None = None,
) -> Iterator[ExporterProcess]:
    port = free_port()
    log_path = config.parent / f"exporter-{port}.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "--config.file",
                str(config),
                "--web.listen-address",
                f"127.0.0.1:{port}",
                *args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
    options = options or ClientOptions()
    scheme = "https" if options.ca_file else "http"
    exporter = ExporterProcess(process, f"{scheme}://127.0.0.1:{port}", log_path, options)
    try:
        wait_for(lambda: _answers(exporter), 10, "the exporter to listen")
        if wait_ready:
            wait_for(
                lambda: exporter.get("/-/ready")[0] == 200,
                15,
                "the exporter to be ready",
            )
        yield exporter
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _answers(exporter: ExporterProcess) -> bool:
    if exporter.process.poll() is not None:
        raise AssertionError(f"exporter exited: {exporter.logs()}")
    try:
        return http_get(f"{exporter.url}/-/healthy", 1, exporter.options)[0] == 200
    except OSError:
        return False


def first_gzip_member(body: bytes) -> bytes:
    """What a reader of the first gzip member only (httpx, some browsers) reads; the body must
    be exactly that one member."""
    reader = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    text = reader.decompress(body)
    assert reader.eof
    assert reader.unused_data == b""
    return text


def deny_reading(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """Reading `denied` fails with EACCES: chmod 000 does not stop root, so the OS answer is
    faked."""
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)


@contextmanager
def serving_exporter(targets: str, interval: str = "5m") -> Iterator["Exporter"]:
    """An Exporter in this process whose HTTP server answers on loopback, with no poller: the
    test writes its state. `targets` is the YAML list of the config's targets."""
    from exporter.app import Exporter  # noqa: PLC0415 - the integration layer never needs it
    from exporter.config import parse_config  # noqa: PLC0415

    config = f"mudbase: {{url: 'http://127.0.0.1:9', token: t0k3n}}\ninterval: {interval}\n"
    exporter = Exporter(
        parse_config(f"{config}targets: {targets}\n", "(test)", {}), ("127.0.0.1", 0)
    )
    thread = threading.Thread(target=exporter.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield exporter
    finally:
        exporter.server.shutdown()
        exporter.server.server_close()
        thread.join()
