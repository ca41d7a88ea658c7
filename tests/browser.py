"""Debian's chromium, headless: a page's DOM as the browser built it, or a screenshot of it."""

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",  # root in CI and here: chromium's sandbox refuses to start as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium() -> str:
    """The binary; a missing one fails (CI installs it: .ci/run's Debian packages)."""
    path = shutil.which("chromium")
    assert path, "chromium is not installed: apt-get install chromium"
    return path


def _run(*args: str, timeout: float = 30.0) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        result = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def dump_dom(url: str) -> str:
    """The page's DOM serialised after the browser parsed it (and ran what it allowed)."""
    return _run("--dump-dom", url)


def screenshot(url: str, out: Path, width: int = 1280, height: int = 800, wait_ms: int = 0) -> None:
    """A PNG of the page's first `height` pixels; `wait_ms` of virtual time for it to settle."""
    extra = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    _run(f"--window-size={width},{height}", *extra, f"--screenshot={out}", url, timeout=60)
    assert out.exists(), f"chromium wrote no {out}"
