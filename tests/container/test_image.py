"""The real image: metadata, --help, --config.check, and the demo on a read-only filesystem."""

import json

import pytest

from tests.container.conftest import IMAGE, Docker
from tests.helpers import free_port, http_get, wait_for

# the first test also builds the image, and on a cold machine the base rootfs (debootstrap:
# up to 900 s), which `.ci/run` builds before pytest but a run of this layer alone does not
pytestmark = pytest.mark.timeout(1500)


def test_image_runs_as_non_root_with_a_healthcheck(docker: Docker) -> None:
    (config,) = json.loads(docker.run("inspect", IMAGE).stdout)
    settings = config["Config"]
    assert settings["User"] == "10001:10001"
    assert settings["Entrypoint"] == ["mudbase-exporter"]
    assert "9717/tcp" in settings["ExposedPorts"]
    assert settings["Healthcheck"]["Test"][0] == "CMD"
    assert "/-/healthy" in settings["Healthcheck"]["Test"][-1]


def test_help_and_config_check(docker: Docker) -> None:
    help_text = docker.run("run", "--rm", IMAGE, "--help").stdout
    assert "--config.file" in help_text
    assert "--web.config.file" in help_text
    check = docker.run(
        "run",
        "--rm",
        "--read-only",
        "-e",
        "MUDBASE_TOKEN=image-test-token",
        IMAGE,
        "--config.check",
    )
    assert "configuration OK: config.yaml" in check.stdout
    assert "image-test-token" not in check.stdout + check.stderr
    bad = docker.run("run", "--rm", IMAGE, "--config.check", check=False)
    assert bad.returncode == 1
    assert "mudbase.token: no credentials" in bad.stderr


def test_demo_serves_metrics_on_a_read_only_root_filesystem(docker: Docker) -> None:
    port = free_port()
    container = docker.run(
        "run",
        "-d",
        "--read-only",
        "--network=host",
        IMAGE,
        "--demo",
        f"--web.listen-address=127.0.0.1:{port}",
    ).stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url), 60, "the demo in the container to be ready")
        status, body = http_get(f"{url}/metrics")
        assert status == 200
        assert body.decode().count("mudbase_function_up{") == 5
        assert docker.run("exec", container, "id", "-u").stdout.strip() == "10001"
        (config,) = json.loads(docker.run("inspect", IMAGE).stdout)
        healthcheck = config["Config"]["Healthcheck"]["Test"][1:]
        probe = [*healthcheck[:-1], healthcheck[-1].replace("9717", str(port))]
        assert docker.run("exec", container, *probe, check=False).returncode == 0
        docker.run("stop", "--time", "10", container)
        state = json.loads(docker.run("inspect", container).stdout)[0]["State"]
        assert state["ExitCode"] == 0
    finally:
        docker.run("rm", "-f", container, check=False)


def _ready(url: str) -> bool:
    try:
        return http_get(f"{url}/-/ready", timeout=1)[0] == 200
    except OSError:
        return False
