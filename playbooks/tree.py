"""`fab render`: plans written as one directory tree per host (absolute paths mirrored), add-ons beside them,
and a manifest per host of what apply would also do (modes, owners, notifications, binaries, services)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from kubefab.playbooks.plan import Plan


def describe(plans: list[Plan]) -> dict:
    """A plan as plain data, for `plans/<host>.yaml` (file contents are in the tree, not here)."""
    return {
        p.component: {
            k: v
            for k, v in {
                "files": [
                    {
                        "path": f.path,
                        "mode": f"{f.mode:04o}",
                        "owner": f"{f.owner}:{f.group}",
                        "notifies": list(f.notifies),
                    }
                    for f in p.files
                ],
                "blocks": [{"path": b.path, "marker": b.marker} for b in p.blocks],
                "binaries": [
                    {"path": b.path, "from": b.source + (f"!{b.member}" if b.member else "")} for b in p.binaries
                ],
                "directories": [
                    {"path": d.path, "mode": f"{d.mode:04o}", "owner": f"{d.owner}:{d.group}"} for d in p.directories
                ],
                "users": list(p.users),
                "steps": [s.name for s in p.steps],
                "services": list(p.services),
                "checks": [f"{c.name} ({c.scope})" for c in p.checks],
                "final_steps": [s.name for s in p.final_steps],
            }.items()
            if v
        }
        for p in plans
    }


MARKER = ".kubefab-render"  # names a directory render wrote, which a later render may clear


class NotOurs(Exception):
    pass


def clear(out: Path) -> None:
    """Empty `out` when an earlier render wrote it, so no stale file stays; refuse a directory render did not
    write (a file, or a directory with files and no marker)."""
    if not out.exists():
        return
    if not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file()):
        raise NotOurs(f"{out} exists and was not written by `kubefab render`: empty it or choose another --out")
    shutil.rmtree(out)


def write(out: Path, plans_by_host: dict[str, list[Plan]], addons: dict[str, bytes]) -> int:
    """Write the tree into an emptied `out` (see `clear`); returns the number of files. The directory holds
    keys: it is made 0700."""
    clear(out)
    out.mkdir(mode=0o700, parents=True)
    (out / MARKER).write_text("written by `kubefab render`; the next render empties this directory\n")
    count = 0
    for host, plans in plans_by_host.items():
        for p in plans:
            for f in p.files:
                _put(out / host / f.path.lstrip("/"), f.content, f.mode)
                count += 1
            for b in p.blocks:
                _put(out / host / b.path.lstrip("/"), b.text().encode(), 0o644)
                count += 1
        _put(out / "plans" / f"{host}.yaml", yaml.safe_dump(describe(plans), sort_keys=False).encode(), 0o644)
    for name, content in addons.items():
        _put(out / "addons" / name, content, 0o644)
        count += 1
    return count


def _put(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, mode)
