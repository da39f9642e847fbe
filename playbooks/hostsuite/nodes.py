"""A testinfra host together with its inventory entry, and the skip for roles it does not have."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kubefab.playbooks.model import Cluster, Host


@dataclass(frozen=True)
class Node:
    cluster: Cluster
    host: Host

    def has(self, role: str) -> bool:
        return self.host.has(role)  # type: ignore[arg-type]


def needs(node: Node, role: str) -> None:
    if not node.has(role):
        pytest.skip(f"{node.host.name} has no {role} role")
