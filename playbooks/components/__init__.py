"""Every component kubefab installs, declared once each (playbooks.component), and what is derived from them:
the deploy phases and the plans they apply, preflight's ports, prepare's packages and firewall openings, the
certificate -> restart table, and the bundle's release files. Pure: no SSH here; `playbooks.runner` carries the
plans out and `kubefab render` writes them to a directory."""

from __future__ import annotations

from collections.abc import Sequence

from kubefab.playbooks import component
from kubefab.playbooks.component import Component
from kubefab.playbooks.components import certificates, host_os
from kubefab.playbooks.components.addons import ADDONS, CNI
from kubefab.playbooks.components.control_plane import APISERVER, CONTROLLER_MANAGER, SCHEDULER
from kubefab.playbooks.components.etcd import ETCD, ETCD_SNAPSHOTS
from kubefab.playbooks.components.images import IMAGES
from kubefab.playbooks.components.load_balancer import HAPROXY, KEEPALIVED
from kubefab.playbooks.components.node import CONTAINERD, KUBE_PROXY, KUBELET
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Binary, Plan, merge
from kubefab.playbooks.versions import Release, Stack, release

# The daemons and the pieces that run in pods, in the order their ports and packages are listed.
DAEMONS: tuple[Component, ...] = (
    ETCD,
    ETCD_SNAPSHOTS,
    APISERVER,
    CONTROLLER_MANAGER,
    SCHEDULER,
    HAPROXY,
    KEEPALIVED,
    CONTAINERD,
    KUBELET,
    KUBE_PROXY,
    CNI,
)
COMPONENTS: tuple[Component, ...] = (
    host_os.component(DAEMONS),
    certificates.component(DAEMONS),
    *DAEMONS,
    IMAGES,
    ADDONS,
)
# The order a deploy runs them in; each phase ends in its components' checks.
PHASES = ("prepare", "certificates", "etcd", "lb", "control-plane", "nodes", "addons")
# Phases whose plans are files on hosts only; the add-ons phase also needs the cluster's API and the bundle's
# manifests, so `render` writes those beside the hosts' trees.
HOST_PHASES = PHASES[:-1]


def of_phase(phase: str) -> tuple[Component, ...]:
    return tuple(comp for comp in COMPONENTS if comp.phase == phase)


def named(name: str) -> Component:
    return next(comp for comp in COMPONENTS if comp.name == name)


def combined_plan(inputs: Inputs, host: Host, phase: str, comps: Sequence[Component]) -> Plan | None:
    """The plans of `comps` on `host` as one (applied in one round trip), or None when none runs there."""
    plans = [p for comp in comps if (p := comp.host_plan(inputs, host)) is not None]
    return merge(phase, plans) if plans else None


def phase_plan(inputs: Inputs, host: Host, phase: str) -> Plan | None:
    return combined_plan(inputs, host, phase, of_phase(phase))


def host_plans(inputs: Inputs, host: Host) -> list[Plan]:
    """Every component's plan on `host` over the host phases, in deploy order."""
    return [p for phase in HOST_PHASES for comp in of_phase(phase) if (p := comp.host_plan(inputs, host))]


def required_ports(c: Cluster, host: Host) -> dict[int, str]:
    return component.held_ports(DAEMONS, c, host)


def firewall_ports(c: Cluster, host: Host) -> tuple[str, ...]:
    return component.firewall_ports(DAEMONS, c, host)


def firewall_rich_rules(c: Cluster, host: Host) -> tuple[str, ...]:
    return component.rich_rules(DAEMONS, c, host)


def releases(c: Cluster | None, stack: Stack, arch: str) -> list[Release]:
    """Every release file a deploy of `c` installs from the bundle (of any cluster when None), each once."""
    names = dict.fromkeys(n for comp in DAEMONS if c is None or comp.hosts(c) for n in comp.releases)
    return [release(n, stack.version_of(n), arch) for n in names]


def binaries_on(c: Cluster, stack: Stack, arch: str, host: Host) -> tuple[Binary, ...]:
    """Every binary the host's components install (what `kubefab verify` compares with the bundle)."""
    return tuple(b for comp in component.on_host(DAEMONS, c, host) for b in comp.binaries(stack, arch))
