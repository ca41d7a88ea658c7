"""Clients that go away are one log line each, never a traceback on stderr: the real exporter,
logging JSON, serving a /metrics bigger than the socket buffers to clients that hang up."""

import json
import socket
import struct
import urllib.request
from pathlib import Path

from tests.helpers import SIM_TOKEN, SimulatorProcess, run_exporter, run_simulator, wait_for
from tests.rawhttp import RawClient

NAME = "x" * 20_000  # a long function name: each function's series carry it, in its info


def send_buffer_max() -> int:
    """The most a TCP socket here buffers for sending (tcp_wmem's maximum)."""
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


def discovering(directory: Path, sim: SimulatorProcess) -> Path:
    config = directory / "config.yaml"
    config.write_text(
        f"mudbase: {{url: '{sim.url}', token: {SIM_TOKEN}, timeout: 5s}}\n"
        "interval: 1h\ntargets: [{project: big, functions: all}]\n"
    )
    return config


def is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def two_gone_or_a_stray_line(logs: str) -> bool:
    """Both clients that left mid-answer are logged, or something that is not JSON is."""
    lines = logs.splitlines()
    gone = sum('"msg": "client went away"' in line for line in lines)
    return gone >= 2 or not all(map(is_json, lines))


def test_clients_that_hang_up_or_reset_are_one_json_line_each(tmp_path: Path) -> None:
    functions = [{"project": "big", "id": f"f{i:03d}", "name": f"{i}{NAME}"} for i in range(500)]
    with (
        run_simulator(functions) as sim,
        run_exporter(
            discovering(tmp_path, sim), "--log.format=json", "--log.level=debug"
        ) as exporter,
    ):
        with urllib.request.urlopen(f"{exporter.url}/metrics", timeout=30) as answer:
            assert len(answer.read()) > 2 * send_buffer_max()  # the server is still writing
        port = int(exporter.url.rsplit(":", 1)[1])

        hangs_up = RawClient(port, receive_buffer=4096)  # a scrape timeout: reads, then goes
        hangs_up.request("GET", "/metrics")
        assert hangs_up.reader.read(5) == b"HTTP/"
        hangs_up.close()

        resets = RawClient(port)
        resets.request("GET", "/metrics")
        resets.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        resets.close()

        resets_mid_request = RawClient(port)
        resets_mid_request.send(b"GET /metr")
        resets_mid_request.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        resets_mid_request.close()

        wait_for(lambda: two_gone_or_a_stray_line(exporter.logs()), 15, "the clients logged")
        assert exporter.get("/-/healthy")[0] == 200  # served on
        exporter.stop()
        lines = exporter.logs().splitlines()
    for line in lines:
        record = json.loads(line)  # every line of stderr is one JSON object: no traceback
        assert record["level"] in ("debug", "info"), line
