"""`fab render`: plans written as one directory tree per host (absolute paths mirrored), add-ons beside them,
and a manifest per host of what apply would also do (modes, owners, notifications, binaries, services)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from playbooks.plan import Plan


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


def write(out: Path, plans_by_host: dict[str, list[Plan]], addons: dict[str, bytes]) -> int:
    """Write the tree; returns the number of files. The directory holds keys: it is made 0700."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out, 0o700)
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
    if not path.exists() or path.read_bytes() != content:
        path.write_bytes(content)
    os.chmod(path, mode)
