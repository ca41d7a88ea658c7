"""A real image from the real Dockerfile, with Debian's docker.io started by hand.

No base image can be pulled here, so `python:3.11-slim-bookworm` is a local stand-in (see
rootfs.py): a Debian bookworm debootstrap with Python 3.11, imported under that name, so the
Dockerfile builds unchanged. `.ci/run` builds and caches it before pytest; run alone on a cold
machine, the first test builds it (test_image.py's timeout allows for that).
Needs root (debootstrap, dockerd), like CI; a missing tool fails, never skips.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.container.rootfs import BuildError, ensure_rootfs, require_tools, unmount_below
from tests.helpers import ROOT, wait_for

BASE_IMAGE = "python:3.11-slim-bookworm"
IMAGE = "mudbase-exporter:ci"
BASE_ENV = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    # this machine reaches PyPI through its own CA bundle; the stand-in trusts the same one
    "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
]


@dataclass
class Docker:
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, timeout: float = 600, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=stdin.decode("latin-1") if stdin else None,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    try:
        require_tools("dockerd", "docker", "debootstrap")
        rootfs = ensure_rootfs()
    except BuildError as error:
        pytest.fail(str(error))
    workdir = Path(tempfile.mkdtemp(prefix="mbx-"))  # short: a unix socket lives here
    socket = str(workdir / "d.sock")
    with (workdir / "dockerd.log").open("w") as log:
        daemon = subprocess.Popen(
            [
                "dockerd",
                f"--data-root={workdir / 'data'}",
                f"--exec-root={workdir / 'exec'}",
                f"--host=unix://{socket}",
                f"--pidfile={workdir / 'dockerd.pid'}",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    client = Docker({**os.environ, "DOCKER_HOST": f"unix://{socket}", "DOCKER_BUILDKIT": "0"})
    try:
        wait_for(
            lambda: client.run("version", check=False, timeout=10).returncode == 0,
            60,
            "dockerd to answer",
        )
        tar = subprocess.run(
            ["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True
        ).stdout
        changes = [arg for env in BASE_ENV for arg in ("--change", env)]
        subprocess.run(
            ["docker", "import", *changes, "-", BASE_IMAGE],
            input=tar,
            env=client.env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        started = time.monotonic()
        client.run("build", "--network=host", "-t", IMAGE, str(ROOT), timeout=900)
        print(f"image built in {time.monotonic() - started:.0f}s")
        yield client
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        unmount_below(workdir)  # dockerd leaves overlay and network-namespace mounts behind
        shutil.rmtree(workdir, ignore_errors=True)
        Path(socket).unlink(missing_ok=True)
