"""kubespray: hosts.yaml (YAML) or inventory.ini (INI) with groups etcd, kube_control_plane, kube_node and
k8s_cluster, and the group_vars/ beside it (k8s_cluster/k8s-cluster.yml, all/all.yml, ...)."""

from __future__ import annotations

import re
from typing import Any

from kubefab.playbooks.importers import common
from kubefab.playbooks.importers.ansible import Inventory, Var
from kubefab.playbooks.importers.common import Candidate, Draft, Rule, choice, domain, kubernetes_version, port
from kubefab.playbooks.model import Role

# kube_master: kubespray's name for kube_control_plane before 2.16.
ROLE_GROUPS: dict[str, Role] = {
    "etcd": "etcd",
    "kube_control_plane": "control_plane",
    "kube_master": "control_plane",
    "kube_node": "worker",
}
CLUSTER_GROUPS = ("all", "k8s_cluster")
RULES = {
    "kube_service_addresses": Rule("network.service_cidr"),
    "kube_pods_subnet": Rule("network.pod_cidr"),
    "skydns_server": Rule("network.dns_ip"),
    "dns_domain": Rule("network.domain", domain),
    "kube_network_plugin": Rule("cni", choice(("calico", "flannel"), "the CNIs")),
    "kube_proxy_mode": Rule("kube_proxy_mode", choice(("iptables", "ipvs", "nftables"), "the kube-proxy modes")),
    "kube_version": Rule("kubernetes_version", kubernetes_version),
    "container_manager": Rule("container_runtime", choice(("containerd",), "the container runtime")),
    "kube_apiserver_port": Rule("api.apiserver_port", port),
    "supplementary_addresses_in_ssl_keys": Rule("api.extra_sans", common.addresses),
}
REASONS = {
    **dict.fromkeys(
        (
            "loadbalancer_apiserver_localhost",
            "loadbalancer_apiserver_type",
            "loadbalancer_apiserver_port",
            "loadbalancer_apiserver_healthcheck_port",
        ),
        "kubespray's apiserver proxy on every node; kubefab runs HAProxy + keepalived on the lb hosts",
    ),
    **common.CONNECTION_REASONS,
}
# The address order: `ip` is where kubespray binds the cluster's services, the others where it is reached.
ADDRESS_ORDER = ("ip", "access_ip", *common.ADDRESS_VARS)
HOST_KEYS = ("ip", "access_ip")
HOST_REASONS = {"etcd_member_name": "kubefab names etcd members after their hosts"}


def convert(inv: Inventory, name: str | None) -> Draft:
    draft = Draft()
    cluster_vars: dict[str, Var] = {}
    for group in CLUSTER_GROUPS:  # k8s_cluster's variables override all's, as in Ansible
        cluster_vars |= inv.groups[group].vars if group in inv.groups else {}
    skip = {*HOST_KEYS, *common.SSH_VARS, *common.ADDRESS_VARS}
    variables = {k: v for k, v in cluster_vars.items() if k not in skip}
    _domain_from_cluster_name(draft, variables)
    balancer = {
        k: variables.pop(k) for k in ("loadbalancer_apiserver", "apiserver_loadbalancer_domain_name") if k in variables
    }
    jump_args = variables.pop("ansible_ssh_common_args", None)
    common.apply_rules(draft, variables, RULES, {**REASONS, **HOST_REASONS})
    _load_balancer(draft, balancer)
    bastions = _bastion(draft, inv, jump_args)
    if draft.get("network.service_cidr") is not None and draft.get("network.dns_ip") is None:
        common.service_address(draft, 3, "where kubespray puts CoreDNS: skydns_server")

    members = {group: inv.members(group) for group in ROLE_GROUPS}
    keys = [h for h in inv.hosts if any(h in m for m in members.values())]
    candidates = []
    for key in keys:
        ip, source, ssh_host = common.pick_address(draft, key, inv.host_vars(key), ADDRESS_ORDER)
        roles = tuple(role for group, role in ROLE_GROUPS.items() if key in members[group])
        candidates.append(Candidate(key, key, ip, roles, source, ssh_host=ssh_host))
    common.add_hosts(draft, candidates)
    common.ssh_settings(draft, inv, keys)
    if not draft.get("api.external"):
        common.lb_shape(draft)
    common.host_vars_report(draft, inv, [*keys, *bastions], HOST_KEYS, HOST_REASONS)
    common.group_report(draft, inv, [*ROLE_GROUPS, "bastion"], CLUSTER_GROUPS, HOST_KEYS, HOST_REASONS)
    common.finish(draft, name, inv.path)
    return draft


def _domain_from_cluster_name(draft: Draft, variables: dict[str, Var]) -> None:
    """kubespray's dns_domain defaults to cluster_name; with dns_domain given, cluster_name only feeds it."""
    var = variables.pop("cluster_name", None)
    if var is None:
        return
    if "dns_domain" in variables:
        variables["dns_domain"] = Var(
            common.plain(variables["dns_domain"].value, {"cluster_name": var}) or variables["dns_domain"].value,
            variables["dns_domain"].where,
        )
        draft.report.add("mapped", common.where(var, "cluster_name"), "network.domain", "through dns_domain")
    else:
        draft.set(
            "network.domain",
            domain(var.value),
            common.where(var, "cluster_name"),
            "derived",
            f"{domain(var.value)} (kubespray's dns_domain defaults to cluster_name)",
        )


def _load_balancer(draft: Draft, variables: dict[str, Var]) -> None:
    """loadbalancer_apiserver {address, port}: the apiservers' address for every client, kubefab's VIP."""
    var = variables.get("loadbalancer_apiserver")
    name = variables.get("apiserver_loadbalancer_domain_name")
    value: Any = None if var is None else var.value
    if var is not None and (not isinstance(value, dict) or "address" not in value):
        draft.report.add(
            "unsupported",
            common.where(var, "loadbalancer_apiserver"),
            "api.vip",
            f"{value!r}: expected {{address, port}}",
        )
    elif var is not None:
        draft.set(
            "api.external", True, common.where(var, "loadbalancer_apiserver"), note="true: the load balancer stays"
        )
        draft.set(
            "api.vip",
            str(value["address"]),
            common.where(var, "loadbalancer_apiserver.address"),
            note=f"{value['address']}: the external load balancer's address; kubefab installs no HAProxy or "
            "keepalived (point its health check at https://<control plane>:6443/readyz)",
        )
        if "port" in value:
            try:
                draft.set("api.port", port(value["port"]), common.where(var, "loadbalancer_apiserver.port"))
            except common.Unsupported as exc:
                draft.report.add(
                    "unsupported",
                    common.where(var, "loadbalancer_apiserver.port"),
                    "api.port",
                    f"{value['port']!r}: {exc}; kubefab default {common.default_of('api.port')} stands",
                )
    if name is not None:
        sans = [*(draft.get("api.extra_sans") or []), str(name.value)]
        draft.set("api.extra_sans", sans, common.where(name, "apiserver_loadbalancer_domain_name"))


_PROXY_JUMP = re.compile(r"(?:-o\s*ProxyJump=|-J\s*)(?:([^@\s,]+)@)?([^:\s,]+)(?::(\d+))?")


def _bastion(draft: Draft, inv: Inventory, args: Var | None) -> list[str]:
    """kubespray's [bastion] group (its ansible_host, ansible_user, ansible_port), or a ProxyJump in
    ansible_ssh_common_args: ssh.bastion. Returns the bastion's inventory names."""
    members = inv.members("bastion")
    jump = _PROXY_JUMP.search(str(args.value)) if args is not None else None
    given = common.where(args, "ansible_ssh_common_args") if args is not None else "-"
    if members:
        v = inv.host_vars(members[0])
        bastion: dict[str, Any] = {"host": str(v["ansible_host"].value) if "ansible_host" in v else members[0]}
        if "ansible_user" in v:
            bastion["user"] = str(v["ansible_user"].value)
        if "ansible_port" in v and str(v["ansible_port"].value).isdigit():
            bastion["port"] = int(v["ansible_port"].value)
        read_from = [k for k in ("ansible_host", "ansible_user", "ansible_port") if k in v]
        draft.set("ssh.bastion", bastion, f"[bastion] {members[0]} ({', '.join(read_from) or 'its name'})")
        for extra in members[1:]:
            draft.report.add("ignored", f"[bastion] {extra}", "-", f"kubefab jumps through one bastion, {members[0]}")
    elif jump is not None:
        bastion = {"host": jump.group(2)} | ({"user": jump.group(1)} if jump.group(1) else {})
        if jump.group(3):
            bastion["port"] = int(jump.group(3))
        draft.set("ssh.bastion", bastion, given)
    if args is not None and (members or jump):
        draft.report.add("mapped", given, "-", "the jump through the bastion: ssh.bastion")
    elif args is not None:
        draft.report.add("ignored", given, "-", common.CONNECTION_REASONS["ansible_ssh_common_args"])
    return members
