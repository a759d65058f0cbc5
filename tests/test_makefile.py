"""`make test` on a fresh machine installs what its tests need: Debian's Chromium for the browser test.

The Makefile's `browser` step runs here against stand-ins for apt-get, sudo and id on an otherwise empty PATH, with
`CHROMIUM` pointed at a path that does not exist, as on a fresh machine: nothing is installed, and the real
browser on this machine (if any) plays no part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
PACKAGES = "chromium chromium-driver"

pytestmark = pytest.mark.skipif(MAKE is None, reason="needs GNU make, which `make test` itself runs under")


def tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def fresh_machine(tmp_path: Path, *, uid: int, apt: bool = True, sudo: bool = False) -> Path:
    """A PATH folder holding only `env`, an `id` that says `uid`, and, if asked, an apt-get and a sudo that log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "env").symlink_to(shutil.which("env"))
    tool(bin_dir, "id", f"echo {uid}")
    log = tmp_path / "calls.log"
    if apt:
        tool(bin_dir, "apt-get", f'echo "apt-get $* DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >> {log}')
    if sudo:
        tool(bin_dir, "sudo", f'echo "sudo" >> {log}; exec "$@"')
    return bin_dir


def make(target: str, bin_dir: Path, chromium: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {"PATH": str(bin_dir), "HOME": str(bin_dir.parent), "LANG": "C"}
    return subprocess.run([MAKE, "-s", "-C", str(ROOT), *flags, target, f"CHROMIUM={chromium}"], env=env,
                          capture_output=True, text=True, timeout=60)


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_make_test_runs_the_browser_install_before_pytest(tmp_path):
    """The README's test command, dry run: the browser step is part of it (it used to be only in .ci/run)."""
    result = make("test", fresh_machine(tmp_path, uid=0), tmp_path / "chromium", "-n")
    assert result.returncode == 0, result.stderr
    assert f"apt-get install -y -qq {PACKAGES}" in result.stdout
    assert result.stdout.index("apt-get install") < result.stdout.index("-m pytest")


def test_missing_chromium_is_installed_with_apt_get_as_root(tmp_path):
    result = make("browser", fresh_machine(tmp_path, uid=0), tmp_path / "chromium")
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == ["apt-get update -qq DEBIAN_FRONTEND=noninteractive",
                               f"apt-get install -y -qq {PACKAGES} DEBIAN_FRONTEND=noninteractive"]


def test_missing_chromium_is_installed_through_sudo_for_other_users(tmp_path):
    result = make("browser", fresh_machine(tmp_path, uid=1000, sudo=True), tmp_path / "chromium")
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == ["sudo", "apt-get update -qq DEBIAN_FRONTEND=noninteractive",
                               "sudo", f"apt-get install -y -qq {PACKAGES} DEBIAN_FRONTEND=noninteractive"]


def test_an_installed_chromium_installs_nothing(tmp_path):
    chromium = tmp_path / "chromium"
    tool(tmp_path, "chromium", "exit 0")
    result = make("browser", fresh_machine(tmp_path, uid=0), chromium)
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == []


@pytest.mark.parametrize("machine", [dict(uid=0, apt=False), dict(uid=1000)], ids=["no-apt-get", "no-root-no-sudo"])
def test_when_chromium_cannot_be_installed_make_says_what_to_install(tmp_path, machine):
    chromium = tmp_path / "chromium"
    result = make("browser", fresh_machine(tmp_path, **machine), chromium)
    assert result.returncode != 0
    assert str(chromium) in result.stderr and PACKAGES in result.stderr
    assert calls(tmp_path) == []


def test_ci_runs_the_readme_test_command_and_installs_nothing_itself():
    """One place installs the browser: the Makefile, which a user's `make test` runs too."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get" not in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
