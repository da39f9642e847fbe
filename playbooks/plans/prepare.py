"""Phase `prepare`: kernel settings, swap, OS packages, SELinux and the firewall, before any component."""

from __future__ import annotations

from playbooks.facts import Facts
from playbooks.model import Cluster, Host
from playbooks.plan import Block, File, Plan, Step
from playbooks.plans.inputs import Inputs
from playbooks.render import render

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

_FSTAB_SWAP = r"^[^#].*[[:space:]]swap[[:space:]]"


IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack")


def modules(c: Cluster) -> tuple[str, ...]:
    return ("overlay", "br_netfilter", *(IPVS_MODULES if c.kube_proxy_mode == "ipvs" else ()))


def packages(c: Cluster, host: Host) -> tuple[str, ...]:
    names: list[str] = []
    if host.has("lb"):
        names += ["haproxy", "keepalived"]
    if host.has("worker"):
        names += ["conntrack", "socat", "ipset", "iptables"]
        names += {"ipvs": ["ipvsadm"], "nftables": ["nftables"]}.get(c.kube_proxy_mode, [])
    return tuple(names)


def plan(inputs: Inputs, host: Host) -> Plan:
    c = inputs.cluster
    facts = inputs.facts.get(host.name)
    steps = [
        Step("swap off, now and at boot",
             unless=f"[ -z \"$(awk 'NR > 1' /proc/swaps)\" ] && ! grep -Eq '{_FSTAB_SWAP}' /etc/fstab",
             run=f"swapoff -a && sed -ri '/{_FSTAB_SWAP}/s/^/#kubefab: /' /etc/fstab"),
        # Checked by what the modules provide, so kernels with them built in (no modprobe possible) pass.
        Step(f"kernel modules {', '.join(modules(c))}",
             unless="grep -qw overlay /proc/filesystems && [ -d /proc/sys/net/bridge ]"
                    + (" && [ -e /proc/net/ip_vs ]" if c.kube_proxy_mode == "ipvs" else ""),
             run=f"modprobe -a {' '.join(modules(c))}"),
        Step("sysctl settings applied",
             unless="[ \"$(sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables "
                    "net.bridge.bridge-nf-call-ip6tables | tr -d '\\n')\" = 111 ]",
             run="sysctl -q -p /etc/sysctl.d/99-kubernetes.conf"),
    ]
    if facts is not None:
        steps += _os_steps(c, host, facts)
    return Plan(
        host.name,
        "prepare",
        files=(
            File("/etc/sysctl.d/99-kubernetes.conf", render("base/99-kubernetes.conf.j2")),
            File("/etc/modules-load.d/kubernetes.conf",
                 render("base/kubernetes.conf.j2", modules=modules(c), ipvs=c.kube_proxy_mode == "ipvs")),
        ),
        blocks=(Block("/etc/hosts", f"kubefab {c.name}", render("base/hosts.j2", cluster=c).decode()),),
        steps=tuple(steps),
    )


def _os_steps(c: Cluster, host: Host, facts: Facts) -> list[Step]:
    """Steps that depend on the host's OS: packages, SELinux and firewalld."""
    steps: list[Step] = []
    names = [PACKAGES[p][facts.family] for p in packages(c, host) if facts.family in PACKAGES[p]]
    if names and facts.family == "debian":
        steps.append(Step(f"packages {' '.join(names)}", unless=f"dpkg -s {' '.join(names)} >/dev/null 2>&1",
                          run=f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q {' '.join(names)}"))
    elif names and facts.family == "rhel":
        manager = facts.package_manager or "yum"
        # --whatprovides: EL9 has no package named iptables (iptables-nft provides it), so a plain `rpm -q` would
        # fail on every run and reinstall.
        steps.append(Step(f"packages {' '.join(names)}",
                          unless=f"rpm -q --whatprovides {' '.join(names)} >/dev/null 2>&1",
                          run=f"{manager} install -y -q {' '.join(names)}"))
    if facts.family == "rhel" and facts.selinux:
        # The book's setting: permissive, so the binaries installed under /usr/local run unconfined.
        steps.append(Step("SELinux permissive",
                          unless="[ \"$(getenforce)\" != Enforcing ] && ! grep -q '^SELINUX=enforcing' "
                                 "/etc/selinux/config",
                          run="setenforce 0 || true; sed -i 's/^SELINUX=enforcing/SELINUX=permissive/' "
                              "/etc/selinux/config"))
    if (facts.firewalld_active or facts.firewalld_enabled) and c.firewall == "disable":
        # Enabled but stopped counts too: it would start at the next boot and block the cluster's ports.
        steps.append(Step("firewalld stopped and disabled",
                          unless="! systemctl is-active -q firewalld && ! systemctl is-enabled -q firewalld",
                          run="systemctl disable --now firewalld"))
    elif facts.firewalld_active and c.firewall == "open":
        ports = firewall_ports(c, host)
        rules = firewall_rich_rules(c, host)
        wanted = " ".join(ports)
        steps.append(Step(
            f"firewalld opens {wanted}",
            unless=" && ".join([f"for p in {wanted}; do firewall-cmd -q --query-port=$p || exit 1; done"]
                               + [f"firewall-cmd -q --query-rich-rule='{r}'" for r in rules]),
            run=" && ".join([f"firewall-cmd -q --permanent --add-port={p}" for p in ports]
                            + [f"firewall-cmd -q --permanent --add-rich-rule='{r}'" for r in rules]
                            + ["firewall-cmd -q --reload"]),
        ))
    return steps


def firewall_ports(c: Cluster, host: Host) -> tuple[str, ...]:
    """The port table of the book's section 2.1, per role, with the CNI's own ports."""
    ports: list[str] = []
    if host.has("etcd"):
        ports += ["2379-2380/tcp"]
    if host.has("control_plane"):
        ports += [f"{c.api.apiserver_port}/tcp", "10257/tcp", "10259/tcp"]
    if host.has("lb"):
        ports += [f"{c.api.port}/tcp"]
    if host.has("worker"):
        ports += ["10250/tcp", "10256/tcp", "30000-32767/tcp"]
        ports += ["179/tcp", "4789/udp"] if c.cni == "calico" else ["8472/udp"]
    return tuple(dict.fromkeys(ports))


def firewall_rich_rules(c: Cluster, host: Host) -> tuple[str, ...]:
    """Protocols without ports: VRRP between keepalived peers, and IP-in-IP (protocol 4), which the upstream
    calico.yaml uses between nodes (CALICO_IPV4POOL_IPIP Always)."""
    rules: list[str] = []
    if host.has("lb"):
        rules.append('rule protocol value="vrrp" accept')
    if host.has("worker") and c.cni == "calico":
        rules.append('rule protocol value="4" accept')
    return tuple(rules)
