"""state.json: what the lab has running, so `down` and `status` work from any later process."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LabHost:
    name: str
    ip: str
    pid: int | None  # the host's systemd-nspawn process; None until started
    root: str  # the host's merged overlay root on the machine


@dataclass(frozen=True)
class LabState:
    bridge: str
    subnet: str
    hosts: tuple[LabHost, ...] = field(default=())

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no lab host {name!r}; hosts: {', '.join(h.name for h in self.hosts) or 'none'}")


def to_json(state: LabState) -> str:
    return json.dumps(asdict(state), indent=2) + "\n"


def from_json(text: str) -> LabState:
    data = json.loads(text)
    return LabState(
        bridge=data["bridge"], subnet=data["subnet"], hosts=tuple(LabHost(**h) for h in data.get("hosts", []))
    )


def load(path: Path) -> LabState | None:
    return from_json(path.read_text()) if path.is_file() else None


def save(path: Path, state: LabState) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(to_json(state))
    tmp.replace(path)
