"""Servers the local stack takes from Debian packages (e.g. `redis-server`), installed by apt if missing."""

from __future__ import annotations

import os
import shutil
import subprocess

from aps_devstack.postgres import MissingPrerequisite

# apt's own lock makes concurrent installs wait; this bounds how long (seconds).
APT_LOCK_TIMEOUT = 300


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", "-q", "-y", "-o", f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT}", *args],
        env=env, capture_output=True, text=True, timeout=900,
    )


def ensure_debian_package(package: str, binary: str) -> str:
    """The path of `binary`, after installing Debian's `package` with apt-get if the binary is missing.

    Installing needs root and apt-get (as in CI: root on a fresh Debian machine); anywhere else a missing
    binary raises MissingPrerequisite naming the package. The package lists are refreshed only when the
    first attempt cannot find the package (a fresh machine has none).
    """
    found = shutil.which(binary)
    if found:
        return found
    hint = f"`{binary}` not found: install Debian's `{package}` package (`sudo apt-get install {package}`)"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise MissingPrerequisite(hint)
    installed = _apt_get("install", "--no-install-recommends", package)
    if installed.returncode != 0:
        updated = _apt_get("update")
        if updated.returncode != 0:
            raise MissingPrerequisite(f"{hint}; `apt-get update` failed:\n{updated.stderr[-2000:]}")
        installed = _apt_get("install", "--no-install-recommends", package)
    found = shutil.which(binary)
    if installed.returncode != 0 or found is None:
        raise MissingPrerequisite(f"{hint}; `apt-get install {package}` failed:\n"
                                  f"{(installed.stdout + installed.stderr)[-2000:]}")
    return found
