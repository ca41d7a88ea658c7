"""docker-compose.yml: one build of the image, every healthcheck on the port its service
listens on, the exporter pointed at the simulator; `docker compose config` where it exists."""

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE_PORT = 9717  # the port the image's HEALTHCHECK probes


def services() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return dict(data["services"])


def listen_port(service: dict[str, Any], flag: str, default: int) -> int:
    for arg in service.get("command", []):
        match = re.fullmatch(rf"{re.escape(flag)}=\S*:(\d+)", arg)
        if match:
            return int(match.group(1))
    return default


def healthcheck_port(service: dict[str, Any]) -> int:
    """The port of the service's own healthcheck, else of the image's HEALTHCHECK."""
    check = service.get("healthcheck")
    if check is None:
        dockerfile = (ROOT / "Dockerfile").read_text()
        (port,) = re.findall(r"HEALTHCHECK[^\n]*\n[^\n]*127\.0\.0\.1:(\d+)", dockerfile)
        return int(port)
    (port,) = re.findall(r"127\.0\.0\.1:(\d+)", " ".join(check["test"]))
    return int(port)


def test_the_image_is_built_once_and_reused() -> None:
    ours = {n: s for n, s in services().items() if s.get("image", "").startswith("mudbase-")}
    assert set(ours) == {"exporter", "simulator"}
    builders = [n for n, s in ours.items() if "build" in s]
    assert builders == ["exporter"]
    assert len({s["image"] for s in ours.values()}) == 1
    assert ours["simulator"]["pull_policy"] == "never"  # never pulled from a registry


def test_every_healthcheck_probes_the_port_its_service_listens_on() -> None:
    found = services()
    exporter, simulator = found["exporter"], found["simulator"]
    assert healthcheck_port(exporter) == listen_port(
        exporter, "--web.listen-address", DOCKERFILE_PORT
    )
    assert healthcheck_port(simulator) == listen_port(simulator, "--listen-address", 0)
    assert simulator["expose"] == [str(listen_port(simulator, "--listen-address", 0))]
    assert exporter["depends_on"]["simulator"]["condition"] == "service_healthy"


def test_the_exporter_is_configured_for_the_simulator() -> None:
    found = services()
    (mount,) = found["exporter"]["volumes"]
    source = ROOT / mount.split(":")[0]
    config = yaml.safe_load(source.read_text())
    port = listen_port(found["simulator"], "--listen-address", 0)
    assert config["mudbase"]["url"] == f"http://simulator:{port}"


def test_the_compose_v2_requirement_is_written_down() -> None:
    assert "Compose v2" in COMPOSE.read_text()


def compose_v2() -> bool:
    if shutil.which("docker") is None:
        return False
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return version.returncode == 0


@pytest.mark.skipif(not compose_v2(), reason="no docker compose v2 plugin here")
def test_docker_compose_config_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
