"""What the kubeasz and kubespray importers share: a draft inventory that reports every field it sets, the rules
that turn source variables into fields, valid host names, SSH settings, and the lb/VIP shape kubefab needs."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubefab.playbooks import versions
from kubefab.playbooks.importers.ansible import Inventory, Var
from kubefab.playbooks.importers.report import Kind, Report
from kubefab.playbooks.model import ROLES, Cluster, Role


class Unsupported(ValueError):
    """A source value kubefab has no equivalent for: the field keeps kubefab's default."""


@dataclass(frozen=True)
class Noted:
    """A converted value with what the report should say about it."""

    value: Any
    note: str


@dataclass(frozen=True)
class Rule:
    target: str
    convert: Callable[[Any], Any] = str


@dataclass
class Draft:
    """The inventory being built. Every field set is recorded in the report with where it came from."""

    report: Report = field(default_factory=Report)
    data: dict[str, Any] = field(default_factory=dict)

    def set(self, target: str, value: Any, source: str, kind: Kind = "mapped", note: str = "") -> None:
        node = self.data
        *parents, last = target.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        self.report.add(kind, source, target, note or f"{value}")

    def get(self, target: str) -> Any:
        node: Any = self.data
        for part in target.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


def where(var: Var, key: str) -> str:
    return f"{var.where} {key}"


def default_of(target: str) -> Any:
    """kubefab's default for a dotted field of the model."""
    if target == "kubernetes_version":
        return versions.default_minor()
    model: Any = Cluster
    *parents, last = target.split(".")
    for part in parents:
        model = type(model.model_fields[part].default)
    return model.model_fields[last].default


def plain(value: Any, variables: Mapping[str, Var]) -> Any:
    """The value, with a bare `{{ other }}` replaced by that variable; None for any other Jinja expression."""
    if not isinstance(value, str) or "{{" not in value:
        return value
    ref = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", value.strip())
    if ref and ref.group(1) in variables and "{{" not in str(variables[ref.group(1)].value):
        return variables[ref.group(1)].value
    return None


def apply_rules(
    draft: Draft, variables: Mapping[str, Var], rules: Mapping[str, Rule], reasons: Mapping[str, str] | None = None
) -> None:
    """Set the field of every variable that has a rule; report the others as ignored."""
    unused: dict[str, Var] = {}
    templated: dict[str, Var] = {}
    for key, var in variables.items():
        value = plain(var.value, variables)
        if key not in rules:
            unused[key] = var
        elif value is None:
            templated[key] = var
        else:
            rule = rules[key]
            try:
                converted = rule.convert(value)
                if isinstance(converted, Noted):
                    draft.set(rule.target, converted.value, where(var, key), note=converted.note)
                else:
                    draft.set(rule.target, converted, where(var, key))
            except Unsupported as exc:
                draft.report.add(
                    "unsupported",
                    where(var, key),
                    rule.target,
                    f"{value!r}: {exc}; kubefab default {default_of(rule.target)} stands",
                )
    ignore(draft, unused, lambda key: (reasons or {}).get(key, "no kubefab equivalent"))
    ignore(draft, templated, lambda key: "a Jinja expression, not evaluated")


def ignore(draft: Draft, variables: Mapping[str, Var], reason: Callable[[str], str]) -> None:
    """One report line per file and reason, naming the variables (never their values: they may be secrets)."""
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key, var in variables.items():
        grouped[(var.where.rsplit(":", 1)[0], reason(key))].append(key)
    for (file, why), keys in grouped.items():
        draft.report.add("ignored", file, "-", f"{why}: {', '.join(keys)}")


def choice(allowed: Iterable[str], what: str) -> Callable[[Any], str]:
    allowed = tuple(allowed)

    def convert(value: Any) -> str:
        if str(value) not in allowed:
            raise Unsupported(f"kubefab supports {what} {', '.join(allowed)}")
        return str(value)

    return convert


def kubernetes_version(value: Any) -> str | Noted:
    """The source's version; a patch release other than the pinned one becomes its minor (the pinned patch), as
    only the pinned one has checksums `kubefab bundle` can verify."""
    text = str(value).removeprefix("v")
    supported = versions.supported_minors()
    try:
        minor = versions.minor_of(text)
    except ValueError:
        raise Unsupported("not a Kubernetes version") from None
    if minor not in supported:
        raise Unsupported(f"kubefab supports Kubernetes {', '.join(supported)}")
    pinned = versions.stack(minor).kubernetes
    if text in (minor, pinned):
        return text
    return Noted(
        minor,
        f"{minor}, which is {pinned}: {text} has no pinned checksums to fetch it with (to keep it, set "
        f"kubernetes_version: {text!r} and build it: kubefab bundle --from-source)",
    )


def domain(value: Any) -> str:
    return str(value).rstrip(".")  # kubeasz writes the DNS domain fully qualified: "cluster.local."


def port(value: Any) -> int:
    if not str(value).isdigit():
        raise Unsupported("not a port number")
    return int(value)


def addresses(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def service_address(draft: Draft, offset: int, why: str) -> None:
    """network.dns_ip where the source tool puts CoreDNS: the offset-th address of the service CIDR."""
    cidr = draft.get("network.service_cidr")
    try:
        net = ipaddress.IPv4Network(str(cidr))
    except ValueError:
        return  # validation reports the CIDR itself
    draft.set(
        "network.dns_ip", str(net.network_address + offset), "-", "derived", f"{net.network_address + offset} ({why})"
    )


# SSH settings Ansible takes per host: variable -> field of kubefab's ssh settings.
SSH_VARS = {
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_ssh_private_key_file": "key",
    "ansible_private_key_file": "key",
    "ansible_become": "sudo",
}
ADDRESS_VARS = ("ansible_host", "ansible_ssh_host")
CONNECTION_REASONS = {
    **dict.fromkeys(
        ("ansible_password", "ansible_ssh_pass", "ansible_become_password", "ansible_become_pass"),
        "kubefab logs in with a key and needs passwordless sudo (value not copied)",
    ),
    **dict.fromkeys(
        ("ansible_ssh_common_args", "ansible_ssh_extra_args"),
        "kubefab takes no SSH options (a jump host is ssh.bastion)",
    ),
    **dict.fromkeys(("ansible_become_user", "ansible_become_method"), "kubefab always uses sudo to root"),
    "ansible_connection": "kubefab always connects with SSH",
    "ansible_python_interpreter": "kubefab runs no Python on the hosts",
}


@dataclass(frozen=True)
class Candidate:
    """A source host kubefab will manage: its Ansible name, the name and IP chosen for it, and its roles."""

    key: str
    name: str
    ip: str | None
    roles: tuple[Role, ...]
    source: str  # where the IP came from
    name_source: str = "its inventory name"
    ssh_host: tuple[str, str] | None = None  # where SSH connects when that is not the ip: (address, where)


def pick_address(
    draft: Draft, key: str, variables: Mapping[str, Var], order: tuple[str, ...]
) -> tuple[str | None, str, tuple[str, str] | None]:
    """The host's IP: the first of `order` set, else its Ansible name when that is an IP; and where SSH connects
    when an SSH address (ansible_host) differs from that IP (hosts[].ssh.host). Other addresses that differ are
    reported as ignored: kubefab has one cluster address per host."""
    given = [(k, str(variables[k].value), variables[k]) for k in order if k in variables]
    if not given:
        try:
            ipaddress.IPv4Address(key)
        except ValueError:
            return None, key, None
        return key, f"[host] {key}", None
    chosen, value, var = given[0]
    same = [other for other, other_value, _ in given[1:] if other_value == value]
    ssh_host = None
    for other, other_value, other_var in given[1:]:
        if other_value == value:
            continue
        if other in ADDRESS_VARS and ssh_host is None and chosen not in ADDRESS_VARS:
            ssh_host = (other_value, where(other_var, other))
            continue
        draft.report.add(
            "ignored",
            where(other_var, other),
            "-",
            f"{other_value}: kubefab has one cluster address per host: {value} ({chosen}) for {key}",
        )
    return value, where(var, chosen) + (f" (= {', '.join(same)})" if same else ""), ssh_host


def valid_name(name: str) -> str:
    """A lowercase RFC 1123 name close to `name` ('Node_1' -> 'node-1', '10.0.0.1' -> 'node-10-0-0-1')."""
    with contextlib.suppress(ValueError):
        name = f"node-{ipaddress.IPv4Address(name)}".replace(".", "-")
    labels = [re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:63].strip("-") for label in name.split(".")]
    return ".".join(label for label in labels if label)[:253].strip(".-") or "node"


def add_hosts(draft: Draft, candidates: list[Candidate]) -> None:
    hosts = []
    taken: set[str] = set()
    for c in candidates:
        name = valid_name(c.name)
        base, n = name, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        if name != c.name:
            draft.report.add(
                "renamed",
                c.key,
                f"hosts[{len(hosts)}].name",
                f"{c.name} -> {name} (node names must be lowercase RFC 1123 DNS names, unique)",
            )
        host: dict[str, Any] = {"name": name, "ip": c.ip, "roles": [r for r in ROLES if r in c.roles]}
        if c.ip is None:
            del host["ip"]
            draft.report.add(
                "missing",
                c.key,
                f"hosts[{len(hosts)}].ip",
                "no address in the source (ansible_host, ip, or an IP as host name)",
            )
        else:
            draft.report.add(
                "mapped",
                c.source,
                f"hosts[{len(hosts)}]",
                f"{name} (from {c.name_source}) {c.ip} {' '.join(host['roles'])}",
            )
        if c.ssh_host is not None:
            host["ssh"] = {"host": c.ssh_host[0]}
            draft.report.add("mapped", c.ssh_host[1], f"hosts[{len(hosts)}].ssh.host", f"{c.ssh_host[0]} (SSH only)")
        hosts.append(host)
    draft.data["hosts"] = hosts


def ssh_settings(draft: Draft, inv: Inventory, keys: list[str]) -> None:
    """Connection variables: when every host has one, the most common value becomes the cluster's ssh setting and
    the other values per-host overrides; otherwise each host that has one gets it."""
    per_field: dict[str, dict[int, tuple[Any, str]]] = defaultdict(dict)
    for i, key in enumerate(keys):
        for var_name, var in inv.host_vars(key).items():
            if var_name in SSH_VARS:
                per_field[SSH_VARS[var_name]][i] = (_ssh_value(SSH_VARS[var_name], var.value), where(var, var_name))
    for name, values in per_field.items():
        usual = None
        if len(values) == len(keys):
            usual = Counter(v for v, _ in values.values()).most_common(1)[0][0]
            draft.set(f"ssh.{name}", usual, next(s for v, s in values.values() if v == usual))
        for i, (value, source) in values.items():
            if value != usual:
                draft.data["hosts"][i].setdefault("ssh", {})[name] = value
                draft.report.add("mapped", source, f"hosts[{i}].ssh.{name}", f"{value}")


def _ssh_value(name: str, value: Any) -> Any:
    if name == "port" and str(value).isdigit():
        return int(value)
    if name == "sudo":
        return str(value).lower() in ("true", "yes", "1")
    return str(value)


def host_vars_report(
    draft: Draft, inv: Inventory, managed: Iterable[str], known: Iterable[str], reasons: Mapping[str, str] | None = None
) -> None:
    """Every variable set on a host that no step used; all of them for hosts kubefab does not manage."""
    used = set(known) | set(SSH_VARS) | set(ADDRESS_VARS)
    why = {**CONNECTION_REASONS, **(reasons or {})}
    managed = set(managed)
    for key, variables in inv.hosts.items():
        if key not in managed:
            listed = f"; its variables: {', '.join(variables)}" if variables else ""
            draft.report.add("ignored", key, "-", f"a host in no group kubefab uses{listed}")
            continue
        ignore(
            draft,
            {k: v for k, v in variables.items() if k not in used},
            lambda k, host=key: why.get(k, "no kubefab equivalent") + f" (host {host})",
        )


def group_report(
    draft: Draft,
    inv: Inventory,
    used: Iterable[str],
    cluster_groups: Iterable[str],
    known_vars: Iterable[str],
    reasons: Mapping[str, str] | None = None,
) -> None:
    """Groups kubefab does not use (their hosts are left out unless a used group names them too), and the
    variables of groups other than the cluster-wide ones, which the importer maps itself."""
    used, cluster_groups = set(used), set(cluster_groups)
    skip = set(known_vars) | set(SSH_VARS) | set(ADDRESS_VARS)
    why = {**CONNECTION_REASONS, **(reasons or {})}
    for written, read in inv.renamed_groups.items():
        draft.report.add("mapped", f"[{written}]", "-", f"read as group {read}, as Ansible does")
    for name, group in inv.groups.items():
        members = inv.members(name)
        if name not in used | cluster_groups | {"ungrouped"} and members:
            draft.report.add("ignored", f"[{name}]", "-", f"a group kubefab does not use: {', '.join(members)}")
        if name not in cluster_groups:
            ignore(
                draft,
                {k: v for k, v in group.vars.items() if k not in skip},
                lambda k, group=name: why.get(k, "no kubefab equivalent") + f" (group {group})",
            )


def lb_shape(draft: Draft) -> None:
    """kubefab puts HAProxy + keepalived with a VIP in front of two or more apiservers. Sources without lb hosts
    (kubespray's nginx on every node, kubeasz's kube-lb) get them on the first two control-plane hosts."""
    hosts = draft.data["hosts"]
    planes = [h for h in hosts if "control_plane" in h["roles"]]
    if len(planes) < 2 or any("lb" in h["roles"] for h in hosts):
        return
    for h in planes[:2]:
        h["roles"].append("lb")
    draft.report.add(
        "derived",
        "-",
        "hosts[].roles",
        f"lb on {planes[0]['name']} and {planes[1]['name']}: the "
        "source balances the apiservers without a VIP; kubefab needs one (HAProxy + keepalived)",
    )


def finish(draft: Draft, name: str | None, path: Path, found: tuple[str, str] | None = None) -> None:
    """Fields kubefab requires or that the operator must check, when the source did not give them. The name:
    --name, else the source's own (`found`: value, where), else the inventory's directory (kubespray's
    inventory/<name>/, kubeasz's clusters/<name>/)."""
    if name:
        draft.set("name", valid_name(name), "--name")
    elif found:
        draft.set("name", valid_name(found[0]), found[1])
    else:
        draft.set("name", valid_name(path.resolve().parent.name), f"the directory of {path}", "derived")
    if draft.get("kubernetes_version") is None:
        draft.set(
            "kubernetes_version",
            versions.default_minor(),
            "-",
            "default",
            f"{versions.default_minor()} (none supported in the source: the newest kubefab supports)",
        )
    if any("lb" in h["roles"] for h in draft.data["hosts"]):
        if draft.get("api.vip") is None:
            draft.report.add("missing", "-", "api.vip", "a free address in the lb hosts' subnet")
        draft.report.add(
            "default",
            "-",
            "api.interface",
            f"{default_of('api.interface')}: check it is the interface holding the lb hosts' IPs",
        )
    for target in ("network.service_cidr", "network.pod_cidr", "network.domain"):
        if draft.get(target) is None:
            draft.report.add("default", "-", target, f"{default_of(target)} (not in the source)")
