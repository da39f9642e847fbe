"""Per-host cgroups. Each nspawn must start in its own cgroup in every hierarchy systemd uses
(cgroup2 and, on hybrid machines, name=systemd): two containers sharing one collide in its /payload."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from pathlib import Path

from playbooks.lab.mounts import MOUNTS, unescape

LAB_GROUP = "kubefab-lab"


def systemd_hierarchies(mounts_text: str) -> list[Path]:
    """Mount points of the cgroup2 hierarchy and of the v1 name=systemd one, where present."""
    found = []
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        if fields[2] == "cgroup2" or (fields[2] == "cgroup" and "name=systemd" in fields[3].split(",")):
            found.append(Path(unescape(fields[1])))
    return found


def lab_groups(mounts_text: str) -> list[Path]:
    return [h / LAB_GROUP for h in systemd_hierarchies(mounts_text)]


def host_groups(name: str) -> list[Path]:
    return [g / name for g in lab_groups(MOUNTS.read_text())]


def enter_then_exec(groups: list[Path], argv: list[str]) -> list[str]:
    """A command line that moves itself into `groups` and then becomes `argv`: the program starts
    already inside them, with no window in which it runs elsewhere."""
    moves = " && ".join(f"echo $$ > {shlex.quote(str(g / 'cgroup.procs'))}" for g in groups)
    return ["sh", "-c", f'{moves} && exec "$@"', "sh", *argv]


def pids(group: Path) -> set[int]:
    """Every process in the group and its descendants."""
    found: set[int] = set()
    for procs in group.rglob("cgroup.procs"):
        try:
            found |= {int(p) for p in procs.read_text().split()}
        except FileNotFoundError:  # a child group removed while walking
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
