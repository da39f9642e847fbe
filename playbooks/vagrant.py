"""The Vagrant VMs as a kubefab inventory. Pure: text in, data out.

The Vagrantfile's settings block (`NAME = ENV.fetch("VARIABLE", "default")`) is the one place the VMs are
described; `settings` reads those lines and applies the same environment overrides Vagrant does, so the inventory
and the VMs agree. `vagrant ssh-config` adds what only Vagrant knows: the user and each VM's private key.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from kubefab.playbooks import versions
from kubefab.playbooks.lab.inventory import roles

NAME = "vagrant"
USER = "vagrant"
_FETCH = re.compile(r'^([A-Z_]+)\s*=\s*ENV\.fetch\("([A-Z0-9_]+)",\s*"([^"]*)"\)', re.M)
_CONST = re.compile(r"^([A-Z_]+)\s*=\s*(\d+)\s*$", re.M)
# ssh_config(5): `Keyword value` or `Keyword=value`.
_OPTION = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+)(.*)$")
REQUIRED = ("IP_PREFIX", "FIRST_OCTET", "VIP_OCTET", "IFACE", "SSH_KEY", "COUNT")


def settings(vagrantfile: str, env: Mapping[str, str]) -> dict[str, str]:
    """The Vagrantfile's settings by constant name, each from its environment variable when that is set."""
    found = {name: env.get(var, default) for name, var, default in _FETCH.findall(vagrantfile)}
    found |= dict(_CONST.findall(vagrantfile))
    missing = [n for n in REQUIRED if n not in found]
    if missing:
        raise ValueError(
            f"Vagrantfile: no setting line for {', '.join(missing)} "
            '(expected NAME = ENV.fetch("VARIABLE", "default") at the top)'
        )
    return found


def machines(s: Mapping[str, str]) -> list[tuple[str, ipaddress.IPv4Address]]:
    """(name, private IP) of each VM, as the Vagrantfile defines them."""
    try:
        first, count = int(s["FIRST_OCTET"]), int(s["COUNT"])
        return [(f"k8s-{i + 1}", ipaddress.IPv4Address(f"{s['IP_PREFIX']}.{first + i}")) for i in range(count)]
    except ValueError as exc:
        raise ValueError(f"Vagrantfile settings: {exc}") from None


def vip(s: Mapping[str, str]) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(f"{s['IP_PREFIX']}.{s['VIP_OCTET']}")
    except ValueError as exc:
        raise ValueError(f"Vagrantfile settings: {exc}") from None


@dataclass(frozen=True)
class SSHEntry:
    """One `Host` block of `vagrant ssh-config`."""

    host: str
    hostname: str
    user: str
    port: int
    identity_files: tuple[str, ...]


def parse_ssh_config(text: str) -> dict[str, SSHEntry]:
    """`vagrant ssh-config` output -> entries by Host. Options kubefab does not use are skipped."""
    blocks: list[dict[str, Any]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _OPTION.match(line)
        if match is None:
            raise ValueError(f"ssh-config line {number}: {line!r} is not `Keyword value`")
        key, value = match.group(1).lower(), _unquote(match.group(2).strip())
        if key == "host":
            blocks.append({"host": value, "identityfile": []})
        elif not blocks:
            raise ValueError(f"ssh-config line {number}: {key} before any Host line")
        elif key == "identityfile":
            blocks[-1]["identityfile"].append(value)
        elif key == "port" and not value.isdigit():
            raise ValueError(f"ssh-config line {number}: Port {value!r} is not a number")
        else:
            blocks[-1].setdefault(key, value)
    return {
        b["host"]: SSHEntry(
            b["host"],
            b.get("hostname", b["host"]),
            b.get("user", USER),
            int(b.get("port", 22)),
            tuple(b["identityfile"]),
        )
        for b in blocks
    }


def _unquote(value: str) -> str:
    """ssh_config quotes values with spaces ("/home/my user/private_key")."""
    return " ".join(shlex.split(value)) if value.startswith('"') else value


def inventory(s: Mapping[str, str], ssh: Mapping[str, SSHEntry] | None = None) -> dict[str, Any]:
    """The inventory of the VMs. Without `ssh` every host uses the operator's key the Vagrantfile authorizes;
    with it, each host gets its own Vagrant key. kubefab connects to the private IP, where sshd listens on 22:
    Vagrant's own route (a NAT port forward on 127.0.0.1) is used only when it is that same IP."""
    vms = machines(s)
    if ssh is not None:
        missing = [name for name, _ in vms if name not in ssh]
        if missing:
            raise ValueError(f"vagrant ssh-config lists no {', '.join(missing)}: is it up (`vagrant up`)?")
    hosts = []
    for i, (name, ip) in enumerate(vms):
        host: dict[str, Any] = {"name": name, "ip": str(ip), "roles": roles(i, len(vms))}
        entry = ssh.get(name) if ssh is not None else None
        if entry is not None:
            login: dict[str, Any] = {"key": entry.identity_files[0]} if entry.identity_files else {}
            if entry.user != USER:
                login["user"] = entry.user
            if entry.hostname == str(ip) and entry.port != 22:
                login["port"] = entry.port
            host["ssh"] = login
        hosts.append(host)
    return {
        "name": NAME,
        "kubernetes_version": versions.default_minor(),
        "network": {"host_prefix": 24},
        "api": {"vip": str(vip(s)), "interface": s["IFACE"]},
        "ssh": {"user": USER, "port": 22} | ({"key": s["SSH_KEY"]} if ssh is None else {}) | {"sudo": True},
        "bundle": "../bundle",
        # The boxes ship with firewalld off; with a box that runs it, kubefab opens the cluster's ports.
        "firewall": "open",
        "hosts": hosts,
    }


def render(data: Mapping[str, Any]) -> str:
    return (
        "# The VMs of the Vagrantfile (its settings block: IPs, VIP, interface). Rewritten by\n"
        "# `kubefab vagrant.inventory` from `vagrant ssh-config`; edit the Vagrantfile or its KUBEFAB_* variables.\n"
        + yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None, width=110)
    )
