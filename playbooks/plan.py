"""A Plan is data: what one component needs on one host. Plans are computed without SSH (`playbooks.plans`)
and carried out by `playbooks.apply`, which compares each item with the host and changes only what differs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class File:
    """A whole file. `notifies`: services restarted when it changes. `secret`: never shown in a diff."""

    path: str
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    notifies: tuple[str, ...] = ()
    secret: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Block:
    """A marked block inside a file kubefab does not own (e.g. /etc/hosts); the rest of the file is kept."""

    path: str
    marker: str
    content: str

    @property
    def begin(self) -> str:
        return f"# BEGIN {self.marker}"

    @property
    def end(self) -> str:
        return f"# END {self.marker}"

    def text(self) -> str:
        return f"{self.begin}\n{self.content.rstrip()}\n{self.end}\n"


@dataclass(frozen=True)
class Binary:
    """An executable taken from the bundle: `source` is a path inside the bundle directory, `member` the file
    inside it when it is an archive."""

    source: str
    member: str | None
    path: str
    notifies: tuple[str, ...] = ()
    mode: int = 0o755


@dataclass(frozen=True)
class Directory:
    path: str
    mode: int = 0o755
    owner: str = "root"
    group: str = "root"


@dataclass(frozen=True)
class Step:
    """A change that is not a file: `run` (as root) only when `unless` exits non-zero. Both are shell."""

    name: str
    unless: str
    run: str
    notifies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    host: str
    component: str
    files: tuple[File, ...] = ()
    blocks: tuple[Block, ...] = ()
    binaries: tuple[Binary, ...] = ()
    directories: tuple[Directory, ...] = ()
    users: tuple[str, ...] = ()  # system users to create (no login, no home)
    steps: tuple[Step, ...] = ()
    services: tuple[str, ...] = ()  # enabled and running once applied

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files if f.path.startswith("/etc/systemd/system/"))
