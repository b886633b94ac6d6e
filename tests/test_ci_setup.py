""".ci/run installs what its tests need: Chromium from Debian's packages where apt-get runs as root, so the page's
browser tests run in CI; without apt-get it carries on and those tests skip with their reason."""

import subprocess

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / ".ci" / "install-chromium"


def stub(directory, name, body):
    path = directory / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def run_with(tmp_path, commands):
    """The script with only the stubbed `commands` on PATH (each logs its arguments)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for name, body in commands.items():
        stub(bin_dir, name, f'echo "{name} $*" >> {log}\n{body}')
    proc = subprocess.run(
        ["/bin/bash", str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=60
    )
    return proc, log.read_text().splitlines() if log.exists() else []


def test_ci_runs_the_installer_before_the_tests():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert lines.index(".ci/install-chromium") < lines.index(".venv/bin/python -m pytest -q")


def test_debian_chromium_is_installed_where_apt_runs_as_root(tmp_path):
    proc, calls = run_with(tmp_path, {"apt-get": "exit 0", "id": "echo 0"})
    assert proc.returncode == 0, proc.stderr
    assert [call for call in calls if call.startswith("apt-get")] == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends chromium",
    ]


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        ({"id": "echo 0"}, "no chromium, and no apt-get run as root to install it; the browser tests will skip"),
        ({"apt-get": "exit 0", "id": "echo 1000"}, "no apt-get run as root"),
        ({"apt-get": "exit 100", "id": "echo 0"}, "apt-get could not install chromium; the browser tests will skip"),
    ],
)
def test_without_apt_ci_carries_on_and_says_why(tmp_path, commands, message):
    proc, _ = run_with(tmp_path, commands)
    assert proc.returncode == 0 and message in proc.stderr


def test_nothing_is_installed_when_chromium_is_there(tmp_path):
    proc, calls = run_with(tmp_path, {"chromium": "exit 0", "apt-get": "exit 0", "id": "echo 0"})
    assert proc.returncode == 0 and calls == []
