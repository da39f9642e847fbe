"""`kubefab init`: a commented starter inventory from a list of hosts, in the book's layout. Pure: text in, text out;
the task validates the result before it writes it."""

from __future__ import annotations

import ipaddress

from kubefab.playbooks import versions


class StarterError(ValueError):
    pass


def parse_hosts(text: str) -> list[tuple[str, str]]:
    """`10.0.0.11,k8s-b=10.0.0.12` -> [(k8s-1, 10.0.0.11), (k8s-b, 10.0.0.12)]: NAME=IP or IP, named k8s-N by
    position when no name is given."""
    hosts = []
    for i, item in enumerate((w.strip() for w in text.split(",") if w.strip()), start=1):
        name, sep, ip = item.rpartition("=")
        try:
            ipaddress.IPv4Interface(ip)
        except ValueError:
            raise StarterError(f"--hosts: {item!r} is not IP or NAME=IP (IPv4, optionally with /prefix)") from None
        hosts.append((name if sep else f"k8s-{i}", ip))
    if not hosts:
        raise StarterError("--hosts: no host given (e.g. --hosts 10.0.0.11,10.0.0.12,10.0.0.13)")
    return hosts


def roles_for(count: int, index: int, vip: bool) -> list[str]:
    """The first three hosts (or the first alone, with fewer than three) run etcd, the control plane and a kubelet;
    with a VIP the first two also run HAProxy + keepalived; the others are workers."""
    planes = 3 if count >= 3 else 1
    if index >= planes:
        return ["worker"]
    return ["etcd", "control_plane", "worker"] + (["lb"] if vip and planes == 3 and index < 2 else [])


def starter(name: str, hosts: list[tuple[str, str]], vip: str | None, user: str, key: str | None) -> str:
    has_vip = vip is not None and len(hosts) >= 3
    lines = [
        "# Written by `kubefab init`: a starting point. Every field is in docs/inventory.md; omitted ones take the",
        "# defaults shown there. Check it with `kubefab inventory.check --inventory <this file>`.",
        f"name: {name}",
        f'kubernetes_version: "{versions.default_minor()}"   # a minor takes its pinned patch release',
        "",
    ]
    if has_vip:
        lines += [
            "api:",
            f"  vip: {vip}             # a free address in the lb hosts' subnet; keepalived moves it between them",
            "  interface: eth0           # the interface holding the hosts' IPs (per host: hosts[].interface)",
            "",
        ]
    elif len(hosts) >= 3:
        lines += ["# No VIP (kubefab init --vip ADDRESS): clients reach the first apiserver only.", ""]
    lines += ["ssh:", f"  user: {user}"]
    if key:
        lines.append(f"  key: {key}")
    lines += [
        "  # known_hosts: ~/.ssh/cluster_known_hosts   # strict host key checking",
        "",
        "bundle: bundle                # release files: kubefab bundle --inventory <this file>",
        "",
        "hosts:",
    ]
    for i, (host, ip) in enumerate(hosts):
        lines += [f"  - name: {host}", f"    ip: {ip}", f"    roles: [{', '.join(roles_for(len(hosts), i, has_vip))}]"]
    return "\n".join(lines) + "\n"
