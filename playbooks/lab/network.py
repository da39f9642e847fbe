"""The lab's private L2: a Linux bridge with one machine address, no NAT and no route out.

Addressing in the lab subnet: the machine at .1, hosts from .11, the inventory's VIP at .100.
"""

from __future__ import annotations

import ipaddress
import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from kubefab.playbooks.lab.commands import run

DEFAULT_BRIDGE = "kflab0"
DEFAULT_SUBNET = IPv4Network("10.77.0.0/24")
LAB_RANGE = IPv4Network("10.0.0.0/8")
GATEWAY_OFFSET = 1
FIRST_HOST_OFFSET = 11
VIP_OFFSET = 100
# nspawn names the machine side of a host's veth "vb-<machine name>".
VETH_PREFIX = "vb-"


def gateway(subnet: IPv4Network) -> IPv4Interface:
    return IPv4Interface(f"{subnet.network_address + GATEWAY_OFFSET}/{subnet.prefixlen}")


def host_ip(subnet: IPv4Network, index: int) -> IPv4Address:
    """Address of the index-th host (1-based)."""
    return subnet.network_address + FIRST_HOST_OFFSET + index - 1


def vip(subnet: IPv4Network) -> IPv4Address:
    return subnet.network_address + VIP_OFFSET


def max_hosts() -> int:
    return VIP_OFFSET - FIRST_HOST_OFFSET


def check_subnet(subnet: IPv4Network, machine_networks: list[IPv4Network]) -> None:
    """The lab subnet must be ours alone: inside 10.0.0.0/8, room for the VIP, clear of the machine's."""
    if not subnet.subnet_of(LAB_RANGE):
        raise ValueError(f"lab subnet {subnet} must lie inside {LAB_RANGE}")
    if subnet.prefixlen > 24:
        raise ValueError(f"lab subnet {subnet} is too small: a /24 or larger holds the hosts and the VIP")
    for net in machine_networks:
        if subnet.overlaps(net):
            raise ValueError(f"lab subnet {subnet} overlaps {net}, already on this machine")


def machine_networks(ip_addr_json: str, ignore: str) -> list[IPv4Network]:
    """IPv4 networks on the machine's links (from `ip -j addr`), except the lab bridge's own."""
    nets = []
    for link in json.loads(ip_addr_json):
        if link.get("ifname") == ignore:
            continue
        for a in link.get("addr_info", []):
            if a.get("family") == "inet" and not IPv4Address(a["local"]).is_loopback:
                nets.append(ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network)
    return nets


def link_names(ip_link_json: str) -> list[str]:
    return [link["ifname"] for link in json.loads(ip_link_json)]


def links() -> list[str]:
    return link_names(run(["ip", "-j", "link", "show"]))


def check_free(subnet: IPv4Network, bridge: str) -> None:
    check_subnet(subnet, machine_networks(run(["ip", "-j", "addr", "show"]), ignore=bridge))


def create_bridge(name: str, subnet: IPv4Network) -> None:
    if name not in links():
        run(["ip", "link", "add", name, "type", "bridge"])
    run(["ip", "addr", "replace", str(gateway(subnet)), "dev", name])
    run(["ip", "link", "set", name, "up"])


def delete_links(names: list[str]) -> None:
    present = set(links())
    for name in names:
        if name in present:
            run(["ip", "link", "delete", name])
