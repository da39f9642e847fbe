"""Rules that relate several fields of a structurally valid cluster. Pure: a cluster in, problems out."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterator
from typing import Literal

from kubefab.playbooks import components, versions
from kubefab.playbooks.component import on_host
from kubefab.playbooks.findings import Field, Finding
from kubefab.playbooks.model import NODE_MASK, Cluster

# kube-apiserver refuses a service CIDR with more than 20 host bits; below /28 there is no room for the
# `kubernetes` Service, the DNS address and the Services a cluster runs.
SERVICE_PREFIX = (12, 28)


def problem(field: Field, found: str, expected: str, severity: Literal["error", "warning"] = "error") -> Finding:
    """A problem before it knows its file and line: the field's path in the document."""
    return Finding("", "inventory", "fail" if severity == "error" else "warn", found, field, expected)


def check(cluster: Cluster) -> list[Finding]:
    return [
        *_hosts(cluster),
        *_roles(cluster),
        *_version(cluster),
        *_networks(cluster),
        *_endpoint(cluster),
        *_ports(cluster),
        *_certificates(cluster),
    ]


def _hosts(c: Cluster) -> Iterator[Finding]:
    names = Counter(h.name for h in c.hosts)
    ips = Counter(h.address for h in c.hosts)
    for i, h in enumerate(c.hosts):
        if names[h.name] > 1:
            yield problem(("hosts", i, "name"), repr(h.name), "a name no other host has (duplicate)")
        if ips[h.address] > 1:
            yield problem(("hosts", i, "ip"), str(h.address), "an IP no other host has (duplicate)")
        subnet = _subnet(c, h.ip)
        if subnet.prefixlen < 31 and h.address in (subnet.network_address, subnet.broadcast_address):
            yield problem(
                ("hosts", i, "ip"),
                f"{h.address}, the {'network' if h.address == subnet.network_address else 'broadcast'} "
                f"address of {subnet}",
                "a host address of the subnet",
            )
        for net, field in ((c.network.service_cidr, "service_cidr"), (c.network.pod_cidr, "pod_cidr")):
            if h.address in net:
                yield problem(
                    ("hosts", i, "ip"),
                    f"{h.address} inside network.{field} {net}",
                    f"a host address outside network.{field}",
                )


def _roles(c: Cluster) -> Iterator[Finding]:
    etcd = len(c.etcd_hosts)
    if etcd == 0 or (etcd % 2 == 0 and not c.etcd.allow_even_members):
        yield problem(
            ("hosts",),
            f"{etcd} host(s) with role etcd",
            "an odd number of etcd members (1, 3 or 5) so the cluster keeps a quorum (an even count needs "
            f"{etcd // 2 + 1} of {etcd} for a quorum and survives no more failures than {max(etcd - 1, 1)}; for the "
            "step of replacing a member, set etcd.allow_even_members: true)",
        )
    if not c.control_plane:
        yield problem(("hosts",), "no host with role control_plane", "at least one control_plane host")
    lbs = len(c.lb_hosts)
    if c.api.external:
        if c.api.vip is None:
            yield problem(
                ("api", "vip"), "api.external without api.vip", "the external load balancer's address as api.vip"
            )
        if lbs:
            yield problem(
                ("hosts",),
                f"{lbs} host(s) with role lb although api.external is set",
                "no lb role: the external load balancer stands in front of the apiservers, not HAProxy",
            )
        return
    if c.api.vip is None and lbs:
        yield problem(
            ("api", "vip"), f"no VIP but {lbs} host(s) with role lb", "a VIP for the lb hosts to hold (or no lb role)"
        )
    if c.api.vip is None and len(c.control_plane) > 1:
        yield problem(
            ("api", "vip"),
            f"no VIP with {len(c.control_plane)} control_plane hosts",
            "a VIP in front of the apiservers (lb role on two or more hosts)",
        )
    if c.api.vip is not None and lbs == 0:
        yield problem(
            ("hosts",),
            "no host with role lb although api.vip is set",
            "the lb role on two or more hosts to hold the VIP (or api.external: true for a load balancer of yours)",
        )
    elif c.api.vip is not None and lbs == 1:
        yield problem(
            ("hosts",), "one host with role lb", "two or more lb hosts: with one, the VIP has no failover", "warning"
        )


def _version(c: Cluster) -> Iterator[Finding]:
    supported = versions.supported_minors()
    try:
        minor = versions.minor_of(c.kubernetes_version)
    except ValueError:
        yield problem(
            ("kubernetes_version",), repr(c.kubernetes_version), f"a version like {supported[-1]} or {supported[-1]}.0"
        )
        return
    if minor not in supported:
        ended = versions.end_of_life(minor)
        found = f"{c.kubernetes_version!r}" + (f", a minor that reached its end of life on {ended}" if ended else "")
        yield problem(("kubernetes_version",), found, f"one of the supported minors: {', '.join(supported)}")
        return
    stack = versions.stack(c.kubernetes_version, c.versions.model_dump())
    pinned = versions.stack(minor).kubernetes
    if stack.kubernetes != pinned:
        yield problem(
            ("kubernetes_version",),
            f"{c.kubernetes_version!r}, a patch release with no pinned checksum",
            f"{minor} or {pinned}: kubefab bundle downloads only release files it can verify against the "
            "versions table (kubefab bundle --from-source can build other patch releases)",
            "warning",
        )
    if int(stack.containerd.split(".")[0]) < 2:
        yield problem(
            ("versions", "containerd"),
            stack.containerd,
            "containerd 2.x: kubefab renders containerd's version 3 configuration",
        )
    if c.kube_proxy_mode == "ipvs":
        yield problem(
            ("kube_proxy_mode",),
            "ipvs, deprecated in kube-proxy since Kubernetes 1.35",
            "nftables (GA since 1.33) or iptables (the default)",
            "warning",
        )
    if getattr(stack, c.cni) in (None, "None"):
        yield problem(
            ("cni",),
            f"{c.cni}, which has no version pinned for Kubernetes {minor}",
            f"calico, or versions.{c.cni} set to a release you have checked",
        )


def _networks(c: Cluster) -> Iterator[Finding]:
    n = c.network
    svc, pod = n.service_cidr, n.pod_cidr
    nodes = len(c.workers)
    if not SERVICE_PREFIX[0] <= svc.prefixlen <= SERVICE_PREFIX[1]:
        wide = svc.prefixlen < SERVICE_PREFIX[0]
        yield problem(
            ("network", "service_cidr"),
            f"{svc}, {'wider than kube-apiserver accepts' if wide else 'too small'}",
            f"a prefix from /{SERVICE_PREFIX[0]} (kube-apiserver's largest) to /{SERVICE_PREFIX[1]} (room for the "
            "`kubernetes` Service, the DNS address and the cluster's Services)",
        )
    room = 2 ** (NODE_MASK - pod.prefixlen) if pod.prefixlen <= NODE_MASK else 0
    if room < max(nodes, 1):
        yield problem(
            ("network", "pod_cidr"),
            f"{pod}: room for {room} node range(s) of /{NODE_MASK}, for {nodes} worker(s)",
            f"a CIDR holding a /{NODE_MASK} per worker (e.g. 10.244.0.0/16)",
        )
    if svc.overlaps(pod):
        yield problem(
            ("network", "pod_cidr"),
            f"{pod}, overlapping network.service_cidr {svc}",
            "service and pod CIDRs that do not overlap",
        )
    for subnet in sorted({_subnet(c, h.ip) for h in c.hosts}):
        for net, field in ((svc, "service_cidr"), (pod, "pod_cidr")):
            if net.overlaps(subnet):
                yield problem(
                    ("network", field),
                    f"{net}, overlapping the host subnet {subnet}",
                    "a CIDR outside every host subnet",
                )
    if n.dns_ip not in svc:
        yield problem(
            ("network", "dns_ip"),
            f"{n.dns_ip} outside network.service_cidr {svc}",
            "an address inside the service CIDR (e.g. its tenth address)",
        )
    elif n.dns_ip in (svc.network_address, svc.broadcast_address, n.kubernetes_service_ip):
        yield problem(
            ("network", "dns_ip"),
            f"{n.dns_ip}, reserved in {svc}",
            f"another address of the service CIDR: {n.kubernetes_service_ip} is the "
            "`kubernetes` Service, and the network and broadcast addresses are unusable",
        )


def _endpoint(c: Cluster) -> Iterator[Finding]:
    vip = c.api.vip
    if vip is None:
        return
    if any(h.address == vip for h in c.hosts):
        yield problem(("api", "vip"), f"{vip}, the address of a host", "an unused address for the VIP")
    for h in c.lb_hosts:
        subnet = _subnet(c, h.ip)
        if vip in (subnet.network_address, subnet.broadcast_address) and subnet.prefixlen < 31:
            yield problem(("api", "vip"), f"{vip}, an address no host can hold in {subnet}", "a host address")
            break
    if not c.api.external and not any(vip in _subnet(c, h.ip) for h in c.lb_hosts or c.hosts):
        yield problem(
            ("api", "vip"),
            f"{vip}, outside every lb host's subnet",
            "an address in the lb hosts' subnet (keepalived moves it between them on one L2 network)",
        )
    for net, field in ((c.network.service_cidr, "service_cidr"), (c.network.pod_cidr, "pod_cidr")):
        if vip in net:
            yield problem(("api", "vip"), f"{vip} inside network.{field} {net}", f"an address outside network.{field}")


def _ports(c: Cluster) -> Iterator[Finding]:
    """The inventory's ports against every port the components on each host hold (and sshd's): two
    listeners cannot share one, and a port inside the NodePort range is taken by kube-proxy's rules. A clash
    of two inventory ports is reported once, on the first."""
    fields = {
        "api.port": (c.api.port, "haproxy"),
        "api.stats.port": (c.api.stats.port, "haproxy"),
        "api.apiserver_port": (c.api.apiserver_port, "kube-apiserver"),
    }
    reported: set[frozenset[str]] = set()
    for field, (number, owner) in fields.items():
        clashes: dict[str, list[str]] = {}
        for host in c.hosts:
            here = on_host(components.DAEMONS, c, host)
            if not any(comp.name == owner for comp in here):
                continue
            claims = [
                (comp.name, p.number, p.last or p.number) for comp in here for p in comp.ports(c) if p.protocol == "tcp"
            ]
            ssh = c.ssh_for(host).port
            claims.append(("sshd", ssh, ssh))
            own = False  # the field's own claim, seen once
            for name, first, last in claims:
                if not first <= number <= last:
                    continue
                if name == owner and first == last and not own:
                    own = True
                    continue
                label = next((f for f, (n, o) in fields.items() if f != field and (n, o) == (first, name)), name)
                clashes.setdefault(label, []).append(host.name)
        for other, hosts in clashes.items():
            if frozenset((field, other)) in reported:
                continue
            reported.add(frozenset((field, other)))
            yield problem(
                (*field.split("."),),
                f"{number}, also used by {other} on {', '.join(dict.fromkeys(hosts))}",
                "a port no other component on those hosts uses (nor the NodePort range)",
            )


def _certificates(c: Cluster) -> Iterator[Finding]:
    cert = c.certificates
    if cert.authorities == "single":
        for name in ("etcd", "front_proxy"):
            if getattr(cert.import_ca, name) is not None:
                yield problem(
                    ("certificates", "import_ca", name),
                    "an imported CA that single mode would not use",
                    "only import_ca.kubernetes with authorities: single (it signs everything), or authorities: split",
                )
    if cert.validity_days > cert.ca_validity_days:
        yield problem(
            ("certificates", "validity_days"),
            f"{cert.validity_days} days",
            f"no more than certificates.ca_validity_days ({cert.ca_validity_days})",
        )
    if cert.renew_within_days >= cert.validity_days:
        yield problem(
            ("certificates", "renew_within_days"),
            f"{cert.renew_within_days} days",
            f"less than certificates.validity_days ({cert.validity_days}), or every run reissues",
        )


def _subnet(c: Cluster, ip: ipaddress.IPv4Interface) -> ipaddress.IPv4Network:
    """A host's subnet: its own /len when given, else network.host_prefix (a bare IP parses as /32)."""
    if ip.network.prefixlen == 32:
        return ipaddress.IPv4Interface(f"{ip.ip}/{c.network.host_prefix}").network
    return ip.network
