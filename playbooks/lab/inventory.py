"""The lab's inventory: the schema of inventory/example.yaml, filled in for the hosts that are up."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import yaml

from kubefab.playbooks.lab.hosts import HOST_IFACE
from kubefab.playbooks.lab.image import USER
from kubefab.playbooks.lab.network import vip
from kubefab.playbooks.lab.state import LabHost

NAME = "lab"
# Keeps the lab's VRRP router id apart from the tests' own keepalived instance.
VIRTUAL_ROUTER_ID = 51


def roles(index: int, count: int) -> list[str]:
    """Roles of the index-th host (0-based) of `count`: the first 3 run etcd and the control plane (the
    first one only with fewer than 3 hosts: etcd needs an odd count), the first 2 also HAProxy +
    keepalived, every host is a worker."""
    found = []
    if index < (3 if count >= 3 else 1):
        found += ["etcd", "control_plane"]
    found.append("worker")
    if index < 2 <= count:
        found.append("lb")
    return found


def lab_inventory(
    hosts: tuple[LabHost, ...],
    subnet: IPv4Network,
    key: Path,
    known_hosts: Path,
    bundle: Path,
    cluster_dir: Path,
    kubernetes_version: str,
    cgroup_v1: bool = False,
) -> dict[str, Any]:
    return {
        "name": NAME,
        "kubernetes_version": kubernetes_version,
        # One host has no lb pair, so no VIP: clients talk to its apiserver directly.
        "api": {
            "vip": str(vip(subnet)) if len(hosts) >= 2 else None,
            "interface": HOST_IFACE,
            "virtual_router_id": VIRTUAL_ROUTER_ID,
        },
        "ssh": {"user": USER, "port": 22, "key": str(key), "sudo": True, "known_hosts": str(known_hosts)},
        "bundle": str(bundle),
        "cluster_dir": str(cluster_dir),
        # Lab hosts are reachable only on the lab bridge: no host firewall to manage.
        "firewall": "skip",
        # nspawn hosts cannot write the kernel's conntrack settings (not namespaced; /sys is read-only).
        "kube_proxy_conntrack": "leave",
        # flannel (buildable here, unlike Calico) with plain routes: every lab host is on the one bridge. Its
        # images and CoreDNS's come from the bundle (imported on every node): no registry is reachable.
        "cni": "flannel",
        "kube_proxy_mode": "nftables",
        # The lab has no DNS server outside the cluster: CoreDNS answers cluster names only.
        "network": {"host_prefix": subnet.prefixlen, "flannel_backend": "host-gw", "upstream_dns": []},
        # On a machine whose cgroup controllers are v1, so are the hosts' (playbooks/lab/hosts.py).
        **({"cgroup_v1": "allow"} if cgroup_v1 else {}),
        "hosts": [{"name": h.name, "ip": h.ip, "roles": roles(i, len(hosts))} for i, h in enumerate(hosts)],
    }


def render(inventory: dict[str, Any]) -> str:
    return (
        "# Written by `kubefab lab.up` for the hosts it started (`lab.add` appends workers); rewritten on every"
        " `lab.up`.\n" + yaml.safe_dump(inventory, sort_keys=False, default_flow_style=None, width=110)
    )


def with_workers(text: str, added: tuple[LabHost, ...]) -> str:
    """The lab inventory `text` with `added` appended as workers, everything else as it was."""
    inventory = yaml.safe_load(text)
    inventory["hosts"] = [*inventory["hosts"], *({"name": h.name, "ip": h.ip, "roles": ["worker"]} for h in added)]
    return render(inventory)


def usage(path: Path) -> str:
    return (
        f"lab inventory: {path}\n"
        f"  kubefab inventory.check --inventory {path}\n"
        f"  kubefab deploy --inventory {path}   (or: export KUBEFAB_INVENTORY={path})\n"
        "  kubefab lab.ssh lab-1 --command 'sudo systemctl status'\n"
        "  kubefab lab.down"
    )


def set_versions(path: Path, kubernetes_version: str, overrides: dict[str, str | None] | None = None) -> None:
    """Rewrite the lab inventory at `path` for another Kubernetes version (the upgrade test and benchmark)."""
    data = yaml.safe_load(path.read_text())
    data["kubernetes_version"] = kubernetes_version
    if overrides is not None:
        data["versions"] = overrides
    path.write_text(yaml.safe_dump(data))
