"""Pure plans: what each host needs, per phase, from the inventory, the PKI, the secrets and the versions.
No SSH here; `playbooks.apply` carries plans out and `fab render` writes them to a directory."""

from __future__ import annotations

from collections.abc import Callable

from playbooks.model import Host
from playbooks.plan import Plan
from playbooks.plans import certificates, control_plane, etcd, lb, nodes, prepare
from playbooks.plans.inputs import Inputs

# Phases that put files on hosts, in the order a deploy runs them (preflight and add-ons have no host plan).
HOST_PHASES: dict[str, Callable[[Inputs, Host], Plan | None]] = {
    "prepare": prepare.plan,
    "certificates": certificates.plan,
    "etcd": etcd.plan,
    "lb": lb.plan,
    "control-plane": control_plane.plan,
    "nodes": nodes.plan,
}


def host_plans(inputs: Inputs, host: Host) -> list[Plan]:
    return [p for build in HOST_PHASES.values() if (p := build(inputs, host)) is not None]
