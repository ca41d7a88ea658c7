"""The local stand-in for the Dockerfile's base image, built once per machine and cached.

No base image can be pulled here, so `python:3.11-slim-bookworm` is a Debian bookworm
debootstrap with Python 3.11 that the container tests import under that name. Building it
downloads about a hundred packages and takes minutes, so it is cached in ROOTFS_CACHE; a tree
counts only with its `.complete` marker. `.ci/run` builds it before pytest
(`python -m tests.container.rootfs`), so no pytest timeout covers debootstrap, and the session
fixture calls the same `ensure_rootfs`, which returns at once when the cache is complete.

A build happens in a staging directory beside the cache, under a lock, and is renamed into
place when finished. A failed, timed-out or interrupted build (SIGINT or SIGTERM) kills
debootstrap's whole process group, unmounts what debootstrap mounted inside the tree (/proc,
/sys, /dev binds) and deletes it; a tree left by a build killed outright is removed by the
next build. Standard library only. Needs root and debootstrap: a missing tool fails.
"""

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NoReturn

CACHE_DIR = Path("/var/cache/mudbase-exporter-ci")
ROOTFS_CACHE = CACHE_DIR / "bookworm-python311"
COMPLETE = ".complete"
STAGING_PREFIX = "building-"  # beside the cache: the final rename stays on one filesystem
LOG = CACHE_DIR / "debootstrap.log"
# earlier versions staged in /var/tmp/rootfs-*, and a killed run left a tree with /proc mounted
LEGACY_STAGING = Path("/var/tmp")  # noqa: S108  (only read here, to remove those trees)
LEGACY_PREFIX = "rootfs-"
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates,passwd"
MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_TIMEOUT = 900.0
GROUP_EXIT_TIMEOUT = 10.0


class BuildError(RuntimeError):
    """The rootfs cannot be built (missing tool, debootstrap failed) or cleaned up."""


def require_tools(*tools: str) -> None:
    """Fail, never skip, without root or without one of `tools`, as in CI."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"missing {missing}: apt-get install docker.io debootstrap (see .ci/run)")
    if os.geteuid() != 0:
        raise BuildError("the container tests need root (debootstrap, dockerd), as in CI")


def is_complete(rootfs: Path = ROOTFS_CACHE) -> bool:
    return (rootfs / COMPLETE).exists()


def ensure_rootfs() -> Path:
    """The cached rootfs, built first when no complete one is cached."""
    if is_complete():
        return ROOTFS_CACHE
    require_tools("debootstrap")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with _build_lock():
        if not is_complete():  # a concurrent build may have finished while this one waited
            remove_stale_builds()
            _build()
    return ROOTFS_CACHE


@contextmanager
def _build_lock() -> Iterator[None]:
    with (CACHE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build() -> None:
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=CACHE_DIR))
    try:
        with _sigterm_interrupts():
            _debootstrap(staging)
            _finish(staging)
        shutil.rmtree(ROOTFS_CACHE, ignore_errors=True)  # an incomplete tree, if any
        staging.rename(ROOTFS_CACHE)
    finally:
        discard(staging)


def _debootstrap(target: Path) -> None:
    command = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm"]
    with LOG.open("wb") as log:
        process = subprocess.Popen(
            [*command, str(target), MIRROR],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed whole on failure
        )
        try:
            returncode = process.wait(timeout=DEBOOTSTRAP_TIMEOUT)
        except BaseException:
            _kill_group(process)
            raise
    if returncode != 0:
        details = _tail(target / "debootstrap/debootstrap.log")
        raise BuildError(f"debootstrap exited with {returncode}:\n{_tail(LOG)}\n{details}")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL debootstrap and all it started (dpkg, mount), then wait until none is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + GROUP_EXIT_TIMEOUT
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _finish(rootfs: Path) -> None:
    """What the Dockerfile expects of the python image, then the marker that makes it count."""
    rootfs.chmod(0o755)  # mkdtemp made it 0700; an image's / is world-readable
    (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
    # this machine reaches PyPI through its own CA bundle; the stand-in trusts the same one
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/")
    (rootfs / COMPLETE).touch()


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While building, SIGTERM raises KeyboardInterrupt as SIGINT does, so cleanup still runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def remove_stale_builds() -> None:
    """Trees of builds killed outright: staging directories (the lock holder owns none yet) and
    the legacy /var/tmp/rootfs-* whose debootstrap no live process still runs."""
    for directory in CACHE_DIR.glob(f"{STAGING_PREFIX}*"):
        discard(directory)
    for directory in LEGACY_STAGING.glob(f"{LEGACY_PREFIX}*"):
        if (directory / "debootstrap").is_dir() and not _in_use(directory):
            discard(directory)


def _in_use(directory: Path) -> bool:
    """Whether a live process names `directory` in its command line or runs inside it."""
    name = str(directory)
    for process in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):  # a process may end while it is read
            if name.encode() in (process / "cmdline").read_bytes():
                return True
            if any(_within(os.readlink(process / link), name) for link in ("root", "cwd")):
                return True
    return False


def discard(directory: Path) -> None:
    """Unmount everything below a partial tree, deepest first, then delete it."""
    if not directory.exists():
        return
    unmount_below(directory)
    if left := mounts_below(directory):
        raise BuildError(f"{directory} kept in place: cannot unmount {left}")
    shutil.rmtree(directory)


def unmount_below(directory: Path) -> None:
    """Lazily unmount every mount point at or below `directory`, deepest first."""
    for point in sorted(mounts_below(directory), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def mounts_below(directory: Path) -> list[str]:
    name = str(directory.resolve())
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return [point for point in points if _within(point, name)]


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def main() -> int:
    """Build the cache unless it is complete; exit 1 on failure, 130 when interrupted."""
    if is_complete():
        print(f"base image rootfs: {ROOTFS_CACHE} (cached)")
        return 0
    print(f"base image rootfs: building {ROOTFS_CACHE} with debootstrap (log: {LOG})", flush=True)
    started = time.monotonic()
    try:
        ensure_rootfs()
    except BuildError as error:
        print(f"base image rootfs: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("base image rootfs: interrupted; the partial tree is removed", file=sys.stderr)
        return 130
    print(f"base image rootfs: built in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
