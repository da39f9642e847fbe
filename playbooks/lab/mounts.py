"""Mount points under a directory: found in /proc/self/mounts, removed deepest first."""

from __future__ import annotations

import shutil
from pathlib import Path

from kubefab.playbooks.lab.commands import run

MOUNTS = Path("/proc/self/mounts")


def unescape(field: str) -> str:
    """/proc/self/mounts writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts_under(path: Path, mounts_text: str) -> list[Path]:
    """Mount points at or below `path`, deepest first (the order to unmount them)."""
    found = []
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) > 1:
            point = Path(unescape(fields[1]))
            if point == path or path in point.parents:
                found.append(point)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_under(path: Path) -> None:
    for point in mounts_under(path, MOUNTS.read_text()):
        run(["umount", "--lazy", point])


def remove_tree(path: Path) -> None:
    """Delete a directory after unmounting whatever is mounted inside it (never follow a live mount)."""
    if path.exists():
        unmount_under(path)
        shutil.rmtree(path)
