"""What the lab tests share: the running lab with one SSH connection per host, and measured timings."""

from __future__ import annotations

from dataclasses import dataclass

from fabric import Connection

from playbooks.lab.settings import LabPaths
from playbooks.lab.state import LabState

# Seconds measured during the run, printed in pytest's summary (and so in CI's log).
TIMINGS: dict[str, float] = {}


@dataclass
class Lab:
    paths: LabPaths
    state: LabState
    connections: dict[str, Connection]

    def run(self, host: str, command: str) -> str:
        """stdout of `command` on `host` as the kubefab user; raises if it fails."""
        return self.connections[host].run(command, hide=True, in_stream=False).stdout.strip()
