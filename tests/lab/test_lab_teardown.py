"""`lab.down` leaves nothing behind: no process, mount, cgroup, bridge or veth. Runs last (conftest)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from labkit import TIMINGS, Lab

from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.cgroups import lab_groups
from kubefab.playbooks.lab.mounts import MOUNTS, mounts_under
from kubefab.playbooks.lab.network import VETH_PREFIX, links

pytestmark = pytest.mark.lab


def processes_rooted_in(directory: Path) -> list[int]:
    """Live processes whose root or cmdline points into the lab (zombies hold neither)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            root = Path(proc / "root").readlink()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if directory == root or directory in root.parents or str(directory).encode() in cmdline:
            found.append(int(proc.name))
    return found


def test_down_leaves_no_process_mount_cgroup_or_link(lab: Lab) -> None:
    start = time.monotonic()
    lifecycle.down(lab.paths)
    TIMINGS["lab.down, 3 hosts"] = time.monotonic() - start

    assert processes_rooted_in(lab.paths.hosts) == []
    assert mounts_under(lab.paths.root, MOUNTS.read_text()) == []
    assert [g for g in lab_groups(MOUNTS.read_text()) if g.exists()] == []
    left = links()
    assert lab.state.bridge not in left
    assert [link for link in left if link.startswith(VETH_PREFIX)] == []
    assert not lab.paths.state.exists() and not lab.paths.hosts.exists()
    assert lifecycle.status(lab.paths) == []
