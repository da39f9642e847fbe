"""The firewalld step's shell, run with sh against a stand-in firewall-cmd (a test double: firewalld itself
needs its own D-Bus system service, which this machine does not run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubefab.playbooks.model import Cluster
from tests.unit.test_prepare_os import cluster, facts, only, plan

pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def example() -> Cluster:
    return cluster()


FAKE_FIREWALL_CMD = """#!/bin/sh
# Stand-in firewall-cmd: --permanent changes go to permanent, --reload copies them to runtime, --query-* read runtime.
cd "$FAKE_FIREWALLD"
permanent=no
for arg in "$@"; do
  case "$arg" in
    --permanent) permanent=yes ;;
    --add-port=*|--add-rich-rule=*) [ $permanent = yes ] && echo "${arg#--add-}" >> permanent ;;
    --reload) cp permanent runtime ;;
    --query-port=*) grep -qxF "port=${arg#--query-port=}" runtime 2>/dev/null || exit 1 ;;
    --query-rich-rule=*) grep -qxF "rich-rule=${arg#--query-rich-rule=}" runtime 2>/dev/null || exit 1 ;;
  esac
done
"""


def test_firewalld_step_shell_opens_then_is_satisfied(example: Cluster, tmp_path: Path) -> None:
    step = only(plan(example, "all", facts("stream9")), "firewalld")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "firewall-cmd").write_text(FAKE_FIREWALL_CMD)
    (bin_dir / "firewall-cmd").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_FIREWALLD": str(tmp_path)}

    def sh(command: str) -> int:
        return subprocess.run(["sh", "-c", command], env=env, timeout=10).returncode

    assert sh(step.unless) != 0
    assert sh(step.run) == 0
    assert sh(step.unless) == 0
    runtime = (tmp_path / "runtime").read_text().splitlines()
    assert "port=30000-32767/tcp" in runtime and 'rich-rule=rule protocol value="vrrp" accept' in runtime
    (tmp_path / "runtime").write_text("\n".join(line for line in runtime if line != "port=10257/tcp") + "\n")
    assert sh(step.unless) != 0, "a port missing at runtime must make the step run again"
