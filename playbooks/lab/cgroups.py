"""Per-host cgroups. Each nspawn starts in its own cgroup in every hierarchy of the machine: two containers
sharing one collide in its /payload, and on a machine with cgroup v1 controllers the host's pods get their CPU,
memory and pids limits in the host's own group of each controller (nspawn's legacy mode hands those groups
to the host, scoped by its cgroup namespace)."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from pathlib import Path

from kubefab.playbooks.lab.mounts import MOUNTS, unescape

LAB_GROUP = "kubefab-lab"


def hierarchies(mounts_text: str) -> list[Path]:
    """Mount points of every cgroup hierarchy: cgroup2 and each v1 one (controllers and name=systemd)."""
    return [
        Path(unescape(f[1]))
        for f in (line.split() for line in mounts_text.splitlines())
        if len(f) >= 4 and f[2] in ("cgroup", "cgroup2")
    ]


def v1_controllers(mounts_text: str) -> list[Path]:
    """The v1 hierarchies that hold resource controllers (not the name=systemd one)."""
    return [
        Path(unescape(f[1]))
        for f in (line.split() for line in mounts_text.splitlines())
        if len(f) >= 4 and f[2] == "cgroup" and not any(o.startswith("name=") for o in f[3].split(","))
    ]


def legacy(mounts_text: str) -> bool:
    """The machine has v1 controllers: its containers' resource limits can only be set there."""
    return bool(v1_controllers(mounts_text))


def lab_groups(mounts_text: str) -> list[Path]:
    return [h / LAB_GROUP for h in hierarchies(mounts_text)]


def host_groups(name: str) -> list[Path]:
    return [g / name for g in lab_groups(MOUNTS.read_text())]


def make_group(group: Path) -> None:
    """mkdir a group and its parents; v1 cpuset groups start with no CPUs or memory nodes, and a task can
    join one only once it has both: each new level takes its parent's."""
    missing = [p for p in (group, *group.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir()
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (path / name).exists() and not (path / name).read_text().strip():
                (path / name).write_text((path.parent / name).read_text())


def enter_then_exec(groups: list[Path], argv: list[str]) -> list[str]:
    """A command line that moves itself into `groups` and then becomes `argv`: the program starts
    already inside them, with no window in which it runs elsewhere."""
    moves = " && ".join(f"echo $$ > {shlex.quote(str(g / 'cgroup.procs'))}" for g in groups)
    return ["sh", "-c", f'{moves} && exec "$@"', "sh", *argv]


def pids(group: Path) -> set[int]:
    """Every process in the group and its descendants."""
    found: set[int] = set()
    # os.walk, not Path.rglob: a child group removed while walking is skipped, where rglob raises.
    for directory, _, names in os.walk(group):
        if "cgroup.procs" not in names:
            continue
        try:
            found |= {int(p) for p in (Path(directory) / "cgroup.procs").read_text().split()}
        except FileNotFoundError:
            continue
    return found


def kill_group(group: Path, timeout: float = 10.0) -> None:
    """SIGKILL whatever is left in the group until it is empty."""
    deadline = time.monotonic() + timeout
    while (left := pids(group)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    if left:
        raise RuntimeError(f"processes {sorted(left)} survive in {group}")


def remove_group(group: Path) -> None:
    """rmdir the group's tree bottom-up (cgroup directories hold only virtual files)."""
    if not group.is_dir():
        return
    for path in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        path.rmdir()
    group.rmdir()
