"""A component declared once: where it runs, the plan of its files on one host, its services and how they
restart, its ports, packages and firewall needs, the bundle files it installs, the credentials it reads, and
its readiness checks. Preflight's ports, prepare's packages and firewall rules, the certificate -> restart
table and the bundle's file list are all derived from these declarations (playbooks.components)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.model import Cluster, Host, Role
from kubefab.playbooks.plan import Binary, Check, Plan
from kubefab.playbooks.versions import Stack


@dataclass(frozen=True)
class Port:
    """A port the component needs open between hosts (`public`) or held by its process (`owner`, checked free
    before a deploy). `last` makes it a range; `bind` is where the process listens: "host" (its inventory
    address), "local" (127.0.0.1), "any" (0.0.0.0), an address, or nowhere on the host itself when empty
    (NodePorts, a CNI's tunnel)."""

    number: int
    protocol: Literal["tcp", "udp"] = "tcp"
    bind: tuple[str, ...] = ("any",)
    public: bool = True  # opened in the host firewall
    last: int | None = None
    owner: str = ""  # the process holding it; default: the component's first service

    def addresses(self, host: Host) -> tuple[str, ...]:
        named = {"host": str(host.address), "local": "127.0.0.1", "any": "0.0.0.0"}
        return tuple(named.get(b, b) for b in self.bind)


def nothing(*_: object) -> tuple:
    return ()


def with_role(role: Role) -> Callable[[Cluster], tuple[Host, ...]]:
    def hosts(c: Cluster) -> tuple[Host, ...]:
        return c.with_role(role)

    hosts.__doc__ = f"the hosts with role {role}"
    return hosts


def first_with(role: Role) -> Callable[[Cluster], tuple[Host, ...]]:
    def hosts(c: Cluster) -> tuple[Host, ...]:
        return with_role(role)(c)[:1]

    hosts.__doc__ = f"the first host with role {role}"
    return hosts


@dataclass(frozen=True)
class Component:
    name: str
    phase: str  # the deploy phase that applies it; a phase applies its components' plans together
    hosts: Callable[[Cluster], tuple[Host, ...]]
    plan: Callable[[Inputs, Host], Plan | None] = lambda inputs, host: None
    services: tuple[str, ...] = ()
    restart: Literal["rolling", "together"] = "together"  # rolling: one host at a time, each checked before the next
    start: Literal["wait", "no-block"] = "wait"  # no-block: a start that only returns once its peers run (etcd)
    ports: Callable[[Cluster], tuple[Port, ...]] = nothing
    packages: Callable[[Cluster], tuple[str, ...]] = nothing  # logical names (playbooks.components.host_os)
    rich_rules: Callable[[Cluster], tuple[str, ...]] = nothing  # firewalld rules for protocols without ports
    releases: tuple[str, ...] = ()  # versions-table names of the bundle files it installs from
    binaries: Callable[[Stack, str], tuple[Binary, ...]] = nothing  # (stack, arch) -> what it installs from them
    # Credentials it reads, as paths under /etc/kubernetes (a stem such as "pki/apiserver" covers .crt and .key)
    # or absolute: a change to one restarts its services.
    reads: tuple[str, ...] = ()
    checks: Callable[[Cluster, Host], tuple[Check, ...]] = nothing
    reload: bool = False  # a change is taken with `systemctl reload-or-restart`: open connections are kept
    # (other host, command) pairs that take this host's service out of ("drain") or back into ("ready") a load
    # balancer's rotation: drained before it starts or restarts, back once its checks pass.
    rotation: Callable[[Cluster, Host, str], tuple[tuple[Host, str], ...]] = lambda c, host, state: ()

    def on(self, c: Cluster, host: Host) -> bool:
        return any(h.name == host.name for h in self.hosts(c))

    def host_plan(self, inputs: Inputs, host: Host) -> Plan | None:
        """Its plan on `host` with its services and checks, or None where it does not run or has nothing."""
        if not self.on(inputs.cluster, host):
            return None
        plan = self.plan(inputs, host)
        binaries = self.binaries(inputs.stack, inputs.arch)
        checks = self.checks(inputs.cluster, host)
        if plan is None and not (self.services or checks or binaries):
            return None
        base = plan or Plan(host.name, self.name)
        return dataclasses.replace(
            base,
            component=self.name,
            binaries=(*binaries, *base.binaries),
            services=(*base.services, *self.services),
            checks=(*base.checks, *checks),
        )


# -- what is derived from a set of declarations --------------------------------------------------------------


def on_host(components: Sequence[Component], c: Cluster, host: Host) -> list[Component]:
    return [comp for comp in components if comp.on(c, host)]


def services_on(components: Sequence[Component], c: Cluster, host: Host) -> set[str]:
    return {s for comp in on_host(components, c, host) for s in comp.services}


def held_ports(components: Sequence[Component], c: Cluster, host: Host) -> dict[int, str]:
    """Port -> the process allowed to hold it, for every port a component on `host` listens on."""
    return {
        p.number: p.owner or comp.services[0]
        for comp in on_host(components, c, host)
        for p in comp.ports(c)
        if p.bind and comp.services
    }


def firewall_ports(components: Sequence[Component], c: Cluster, host: Host) -> tuple[str, ...]:
    """The host's public ports as firewalld writes them ("6443/tcp"); neighbours merged into a range."""
    spans: list[tuple[int, int, str]] = []
    for comp in on_host(components, c, host):
        for p in comp.ports(c):
            if not p.public:
                continue
            last = p.last or p.number
            if spans and spans[-1][2] == p.protocol and spans[-1][1] + 1 == p.number and not p.last:
                spans[-1] = (spans[-1][0], last, p.protocol)
            else:
                spans.append((p.number, last, p.protocol))
    text = [f"{a}-{b}/{proto}" if b != a else f"{a}/{proto}" for a, b, proto in spans]
    return tuple(dict.fromkeys(text))


def rich_rules(components: Sequence[Component], c: Cluster, host: Host) -> tuple[str, ...]:
    return tuple(dict.fromkeys(r for comp in on_host(components, c, host) for r in comp.rich_rules(c)))


def packages(components: Sequence[Component], c: Cluster, host: Host) -> set[str]:
    return {p for comp in on_host(components, c, host) for p in comp.packages(c)}


def readers(components: Sequence[Component], c: Cluster, host: Host, credential: str) -> tuple[str, ...]:
    """The services on `host` that read `credential` (a path under /etc/kubernetes, or absolute); a key or
    certificate is also matched by its stem ("pki/apiserver" covers apiserver.crt and apiserver.key)."""
    stem = credential.rsplit(".", 1)[0]
    return tuple(
        s
        for comp in on_host(components, c, host)
        if credential in comp.reads or stem in comp.reads
        for s in comp.services
    )
