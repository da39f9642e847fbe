"""Where the lab keeps its state: one directory outside the source tree, nothing in the repo."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path("/var/lib/kubefab/lab")
ENV_DIR = "KUBEFAB_LAB_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def image(self) -> Path:
        return self.root / "image"

    @property
    def rootfs(self) -> Path:
        return self.image / "rootfs"

    @property
    def image_stamp(self) -> Path:
        return self.image / "packages.sha256"

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    @property
    def key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "ssh" / "known_hosts"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.yaml"

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def cluster(self) -> Path:
        return self.root / "cluster"


def lab_dir(env: Mapping[str, str] = os.environ, repo: Path = REPO_ROOT) -> Path:
    """The lab directory: $KUBEFAB_LAB_DIR or the default; never inside the source tree."""
    path = Path(env.get(ENV_DIR) or DEFAULT_DIR).expanduser().resolve()
    if path == repo or repo in path.parents:
        raise ValueError(f"{ENV_DIR}={path} is inside the source tree {repo}: choose a directory outside it")
    return path


def lab_paths(env: Mapping[str, str] = os.environ) -> LabPaths:
    return LabPaths(lab_dir(env))
