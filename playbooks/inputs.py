"""Everything a plan is computed from, read once per run. Pure data: `playbooks.clusterdir.prepare` decides it on
the operator's machine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kubefab.playbooks import hardening, ports
from kubefab.playbooks.facts import Facts
from kubefab.playbooks.model import NODE_MASK, Cluster, Host
from kubefab.playbooks.secrets import Secrets
from kubefab.playbooks.versions import Stack, stack

REMOTE_PKI = "/etc/kubernetes/pki"


@dataclass(frozen=True)
class Inputs:
    cluster: Cluster
    stack: Stack
    secrets: Secrets
    # The cluster directory's PKI files by relative path: "pki/ca.crt", "kubeconfig/admin.conf".
    credentials: Mapping[str, bytes]
    arch: str = "amd64"
    facts: Mapping[str, Facts] = field(default_factory=dict)  # by host name; empty when rendering offline

    def context(self, host: Host | None = None, **extra: object) -> dict[str, object]:
        """Template variables shared by every template."""
        return {
            "cluster": self.cluster,
            "stack": self.stack,
            "secrets": self.secrets,
            "pki_dir": REMOTE_PKI,
            "ports": ports.TEMPLATE,
            "host": host,
            "node_mask": NODE_MASK,
            "hardening": hardening,
            **extra,
        }


def stack_of(c: Cluster) -> Stack:
    return stack(c.kubernetes_version, c.versions.model_dump())
