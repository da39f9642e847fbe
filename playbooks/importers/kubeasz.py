"""kubeasz: the cluster's `hosts` file (INI: groups etcd, kube_master, kube_node, ex_lb; settings in [all:vars])
and, when it sits beside it, config.yml (K8S_VER, CLUSTER_NAME, MASTER_CERT_HOSTS)."""

from __future__ import annotations

from pathlib import Path

from kubefab.playbooks.importers import common
from kubefab.playbooks.importers.ansible import Inventory, Var, read_vars
from kubefab.playbooks.importers.common import Candidate, Draft, Rule, choice, domain, kubernetes_version, port
from kubefab.playbooks.model import Role

ROLE_GROUPS: dict[str, Role] = {"etcd": "etcd", "kube_master": "control_plane", "kube_node": "worker", "ex_lb": "lb"}
RULES = {
    "SERVICE_CIDR": Rule("network.service_cidr"),
    "CLUSTER_CIDR": Rule("network.pod_cidr"),
    "CLUSTER_DNS_DOMAIN": Rule("network.domain", domain),
    "CLUSTER_NETWORK": Rule("cni", choice(("calico", "flannel"), "the CNIs")),
    "CONTAINER_RUNTIME": Rule("container_runtime", choice(("containerd",), "the container runtime")),
    "PROXY_MODE": Rule("kube_proxy_mode", choice(("iptables", "ipvs", "nftables"), "the kube-proxy modes")),
    "K8S_VER": Rule("kubernetes_version", kubernetes_version),
    "SECURE_PORT": Rule("api.apiserver_port", port),
}
CONFIG_RULES = {"K8S_VER": RULES["K8S_VER"], "MASTER_CERT_HOSTS": Rule("api.extra_sans", common.addresses)}
REASONS = {
    "NODE_PORT_RANGE": "kubefab keeps Kubernetes' NodePort range 30000-32767",
    **dict.fromkeys(("bin_dir", "base_dir", "cluster_dir", "ca_dir"), "kubeasz's own directories"),
}
# Host variables this importer reads itself (k8s_nodename also appears in [all:vars] as the empty default).
HOST_KEYS = ("k8s_nodename", "NODE_NAME", "LB_ROLE", "EX_APISERVER_VIP", "EX_APISERVER_PORT")


def convert(inv: Inventory, name: str | None) -> Draft:
    draft = Draft()
    cluster_vars = inv.groups["all"].vars if "all" in inv.groups else {}
    skip = {*HOST_KEYS, *common.SSH_VARS, *common.ADDRESS_VARS}
    common.apply_rules(
        draft, {k: v for k, v in cluster_vars.items() if k not in skip}, RULES, {**REASONS, **common.CONNECTION_REASONS}
    )
    if draft.get("network.service_cidr") is not None:
        common.service_address(draft, 2, "where kubeasz puts CoreDNS: CLUSTER_DNS_SVC_IP")

    members = {group: inv.members(group) for group in ROLE_GROUPS}
    keys = _master_first([h for h in inv.hosts if any(h in m for m in members.values())], members["ex_lb"], inv)
    candidates = []
    for key in keys:
        variables = inv.host_vars(key)
        ip, source, _ = common.pick_address(draft, key, variables, common.ADDRESS_VARS)
        named = [k for k in ("k8s_nodename", "NODE_NAME") if str(variables.get(k, Var("", "")).value)]
        if named:
            node_name, name_source = str(variables[named[0]].value), named[0]
        else:  # kubeasz names such nodes after their inventory name, an IP
            node_name = key
            name_source = "its inventory name" + (", k8s_nodename being empty" if "k8s_nodename" in variables else "")
        roles = tuple(role for group, role in ROLE_GROUPS.items() if key in members[group])
        candidates.append(Candidate(key, node_name, ip, roles, source, name_source))
    common.add_hosts(draft, candidates)
    masters_only = [k for k in members["kube_master"] if k not in members["kube_node"]]
    if masters_only:
        draft.report.add(
            "default",
            "[kube_master]",
            "hosts[].roles",
            "control_plane without worker: kubeasz also "
            f"runs a cordoned kubelet on {', '.join(masters_only)}; add the worker role for the same",
        )
    common.ssh_settings(draft, inv, keys)
    _vip(draft, inv, members["ex_lb"])
    common.lb_shape(draft)
    common.host_vars_report(draft, inv, keys, HOST_KEYS)
    common.group_report(draft, inv, ROLE_GROUPS, ("all",), HOST_KEYS)

    config = inv.path.parent / "config.yml"
    cluster_name = _config(draft, config) if config.is_file() else None
    directory = inv.path.resolve().parent.name
    if cluster_name is not None and common.valid_name(cluster_name[0]) == common.valid_name(directory):
        draft.report.add("mapped", cluster_name[1], "name", f"{cluster_name[0]}, as its directory")
    elif cluster_name is not None:
        draft.report.add(
            "ignored",
            cluster_name[1],
            "name",
            f"{cluster_name[0]}: kubeasz's CLUSTER_NAME is cluster1 unless changed, the same for every cluster; "
            f"the name is its directory's ({directory}), so two clusters never share a cluster directory and CA",
        )
    common.finish(draft, name, inv.path)
    return draft


def _master_first(keys: list[str], lb: list[str], inv: Inventory) -> list[str]:
    """kubefab gives the first lb host the highest VRRP priority: the LB_ROLE=master host takes the first lb slot."""
    slots = [i for i, k in enumerate(keys) if k in lb]
    ordered = sorted(
        (keys[i] for i in slots), key=lambda k: str(inv.host_vars(k).get("LB_ROLE", Var("", "")).value) != "master"
    )
    out = list(keys)
    for i, key in zip(slots, ordered, strict=True):
        out[i] = key
    return out


def _vip(draft: Draft, inv: Inventory, lb: list[str]) -> None:
    """EX_APISERVER_VIP / EX_APISERVER_PORT are set per ex_lb host; kubefab has one VIP and one port."""
    for key, target, convert in (("EX_APISERVER_VIP", "api.vip", str), ("EX_APISERVER_PORT", "api.port", port)):
        given = [(h, inv.host_vars(h)[key]) for h in lb if key in inv.host_vars(h)]
        if not given:
            continue
        first = given[0][1]
        draft.set(target, convert(first.value), common.where(first, key))
        for host, var in given[1:]:
            if str(var.value) != str(first.value):
                draft.report.add(
                    "ignored",
                    common.where(var, key),
                    "-",
                    f"{var.value} on {host}: kubefab has one {target}, {first.value}",
                )
    for host in lb:
        role = inv.host_vars(host).get("LB_ROLE")
        if role is not None:
            draft.report.add(
                "mapped",
                common.where(role, "LB_ROLE"),
                "hosts[].roles",
                f"{role.value} on {host}: lb; the master is listed first (highest VRRP priority)",
            )


def _config(draft: Draft, path: Path) -> tuple[str, str] | None:
    """config.yml: the Kubernetes version and certificate names; its component settings have no kubefab fields.
    Returns CLUSTER_NAME and where it is."""
    variables = read_vars(path)
    cluster_name = variables.pop("CLUSTER_NAME", None)
    if draft.get("kubernetes_version") is not None:
        variables.pop("K8S_VER", None)  # [all:vars] wins, as in kubeasz
    common.apply_rules(draft, variables, CONFIG_RULES)
    return None if cluster_name is None else (str(cluster_name.value), common.where(cluster_name, "CLUSTER_NAME"))
