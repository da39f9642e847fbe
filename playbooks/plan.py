"""A Plan is data: what one component needs on one host. Plans are computed without SSH
(`playbooks.components`) and carried out by `playbooks.apply`, which compares each item with the host and
changes only what differs; `playbooks.runner` orders them across hosts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from kubefab.playbooks import paths


@dataclass(frozen=True)
class File:
    """A whole file. `notifies`: services restarted when it changes. `secret`: never shown in a diff."""

    path: str
    content: bytes
    mode: int = 0o600  # what the CIS benchmark asks of configuration, units and credentials alike
    owner: str = "root"
    group: str = "root"
    notifies: tuple[str, ...] = ()
    secret: bool = False

    def __post_init__(self) -> None:
        paths.check_absolute(self.path)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Block:
    """A marked block inside a file kubefab does not own (e.g. /etc/hosts); the rest of the file is kept."""

    path: str
    marker: str
    content: str

    def __post_init__(self) -> None:
        paths.check_absolute(self.path)

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

    def __post_init__(self) -> None:
        paths.check_absolute(self.path)


@dataclass(frozen=True)
class Directory:
    path: str
    mode: int = 0o755
    owner: str = "root"
    group: str = "root"

    def __post_init__(self) -> None:
        paths.check_absolute(self.path)


@dataclass(frozen=True)
class Step:
    """A change that is not a file: `run` (as root) only when `unless` exits non-zero. Both are shell."""

    name: str
    unless: str
    run: str
    notifies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """A readiness check: `command` (shell, as root) is retried until it exits 0, for up to `seconds`.
    `scope`: "each" runs on every host whose plan holds it (and after a rolling restart of that host);
    "once" for the whole cluster, on the first host holding it; "exactly-one" on every host holding it, until
    exactly one of them succeeds (the VIP holder)."""

    name: str
    command: str
    seconds: float = 60
    interval: float = 1.0
    scope: Literal["each", "once", "exactly-one"] = "each"


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
    checks: tuple[Check, ...] = ()  # waited on once the phase's services run
    # Steps for the whole cluster (through its API), run on this host once every host of the phase is done.
    final_steps: tuple[Step, ...] = ()

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files if f.path.startswith("/etc/systemd/system/"))


def merge(component: str, plans: list[Plan]) -> Plan:
    """The plans of several components on one host as one (applied in one round trip), in their order."""
    fields = ("files", "blocks", "binaries", "directories", "users", "steps", "services", "checks", "final_steps")
    joined = {f: tuple(dict.fromkeys(x for p in plans for x in getattr(p, f))) for f in fields}
    return Plan(plans[0].host, component, **joined)
