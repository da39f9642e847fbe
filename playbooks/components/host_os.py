"""The host itself, before any component: kernel settings, swap, OS packages, SELinux and the firewall. Which
packages and ports is derived from the components the host runs."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from kubefab.playbooks import component as derive
from kubefab.playbooks import hardening
from kubefab.playbooks.component import Component
from kubefab.playbooks.facts import Facts
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Block, File, Plan, Step
from kubefab.playbooks.render import render

# Logical package -> name per OS family (the node packages are what kubelet and kube-proxy call).
PACKAGES = {
    "haproxy": {"debian": "haproxy", "rhel": "haproxy"},
    "keepalived": {"debian": "keepalived", "rhel": "keepalived"},
    "conntrack": {"debian": "conntrack", "rhel": "conntrack-tools"},
    "socat": {"debian": "socat", "rhel": "socat"},
    "ipset": {"debian": "ipset", "rhel": "ipset"},
    "iptables": {"debian": "iptables", "rhel": "iptables"},
    "ipvsadm": {"debian": "ipvsadm", "rhel": "ipvsadm"},
    "nftables": {"debian": "nftables", "rhel": "nftables"},
}

# What kube-proxy and the CNI need from the kernel (bridged traffic through netfilter, forwarding).
NETWORK_SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
}

_FSTAB_SWAP = r"^[^#].*[[:space:]]swap[[:space:]]"
FSTAB_MARK = "#kubefab: "  # before each swap line kubefab turned off, so `reset` can restore it


IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack")


def modules(c: Cluster) -> tuple[str, ...]:
    return ("overlay", "br_netfilter", *(IPVS_MODULES if c.kube_proxy_mode == "ipvs" else ()))


def plan(daemons: Sequence[Component], inputs: Inputs, host: Host) -> Plan:
    c = inputs.cluster
    facts = inputs.facts.get(host.name)
    kernel = hardening.KUBELET_KERNEL if host.has("worker") else {}
    settings = NETWORK_SYSCTLS | kernel
    steps = [
        Step(
            "swap off, now and at boot",
            unless=f"[ -z \"$(awk 'NR > 1' /proc/swaps)\" ] && ! grep -Eq '{_FSTAB_SWAP}' /etc/fstab",
            run=f"swapoff -a && sed -ri '/{_FSTAB_SWAP}/s/^/{FSTAB_MARK}/' /etc/fstab",
        ),
        # Checked by what the modules provide, so kernels with them built in (no modprobe possible) pass.
        Step(
            f"kernel modules {', '.join(modules(c))}",
            unless="grep -qw overlay /proc/filesystems && [ -d /proc/sys/net/bridge ]"
            + (" && [ -e /proc/net/ip_vs ]" if c.kube_proxy_mode == "ipvs" else ""),
            run=f"modprobe -a {' '.join(modules(c))}",
        ),
        Step(
            "sysctl settings applied",
            unless=f'[ "$(sysctl -n {" ".join(settings)} | tr "\\n" " ")" = "{" ".join(settings.values())} " ]',
            run="sysctl -q -p /etc/sysctl.d/99-kubernetes.conf",
        ),
    ]
    if facts is not None:
        steps += _os_steps(daemons, c, host, facts)
    return Plan(
        host.name,
        "prepare",
        files=(
            File("/etc/sysctl.d/99-kubernetes.conf", render("base/99-kubernetes.conf.j2", settings=settings)),
            File(
                "/etc/modules-load.d/kubernetes.conf",
                render("base/kubernetes.conf.j2", modules=modules(c), ipvs=c.kube_proxy_mode == "ipvs"),
            ),
        ),
        blocks=(Block("/etc/hosts", f"kubefab {c.name}", render("base/hosts.j2", cluster=c).decode()),),
        steps=tuple(steps),
    )


def _os_steps(daemons: Sequence[Component], c: Cluster, host: Host, facts: Facts) -> list[Step]:
    """Steps that depend on the host's OS: packages, SELinux and firewalld."""
    steps: list[Step] = []
    wanted = derive.packages(daemons, c, host)
    names = [PACKAGES[p][facts.family] for p in PACKAGES if p in wanted and facts.family in PACKAGES[p]]
    if names and facts.family == "debian":
        steps.append(
            Step(
                f"packages {' '.join(names)}",
                unless=f"dpkg -s {' '.join(names)} >/dev/null 2>&1",
                run=f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q {' '.join(names)}",
            )
        )
    elif names and facts.family == "rhel":
        manager = facts.package_manager or "yum"
        # --whatprovides: EL9 has no package named iptables (iptables-nft provides it), so a plain `rpm -q` would
        # fail on every run and reinstall.
        steps.append(
            Step(
                f"packages {' '.join(names)}",
                unless=f"rpm -q --whatprovides {' '.join(names)} >/dev/null 2>&1",
                run=f"{manager} install -y -q {' '.join(names)}",
            )
        )
    if facts.family == "rhel" and facts.selinux:
        # The book's setting: permissive, so the binaries installed under /usr/local run unconfined.
        steps.append(
            Step(
                "SELinux permissive",
                unless="[ \"$(getenforce)\" != Enforcing ] && ! grep -q '^SELINUX=enforcing' /etc/selinux/config",
                run="setenforce 0 || true; sed -i 's/^SELINUX=enforcing/SELINUX=permissive/' /etc/selinux/config",
            )
        )
    if (facts.firewalld_active or facts.firewalld_enabled) and c.firewall == "disable":
        # Enabled but stopped counts too: it would start at the next boot and block the cluster's ports.
        steps.append(
            Step(
                "firewalld stopped and disabled",
                unless="! systemctl is-active -q firewalld && ! systemctl is-enabled -q firewalld",
                run="systemctl disable --now firewalld",
            )
        )
    elif facts.firewalld_active and c.firewall == "open":
        ports = derive.firewall_ports(daemons, c, host)
        rules = derive.rich_rules(daemons, c, host)
        wanted = " ".join(ports)
        steps.append(
            Step(
                f"firewalld opens {wanted}",
                unless=" && ".join(
                    [f"for p in {wanted}; do firewall-cmd -q --query-port=$p || exit 1; done"]
                    + [f"firewall-cmd -q --query-rich-rule='{r}'" for r in rules]
                ),
                run=" && ".join(
                    [f"firewall-cmd -q --permanent --add-port={p}" for p in ports]
                    + [f"firewall-cmd -q --permanent --add-rich-rule='{r}'" for r in rules]
                    + ["firewall-cmd -q --reload"]
                ),
            )
        )
    return steps


def component(daemons: Sequence[Component]) -> Component:
    """Every host prepared for the `daemons` it runs: their packages and firewall openings."""
    return Component("prepare", phase="prepare", hosts=lambda c: c.hosts, plan=partial(plan, daemons))
