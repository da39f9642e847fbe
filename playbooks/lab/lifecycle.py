"""Bringing the lab up and down, and what is running: the public entry points the tasks call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from kubefab.playbooks import source
from kubefab.playbooks.lab import cgroups, hosts, network
from kubefab.playbooks.lab.bundle import ensure_bundle, lab_stack
from kubefab.playbooks.lab.image import current_image, ensure_image
from kubefab.playbooks.lab.inventory import lab_inventory, render, with_workers
from kubefab.playbooks.lab.keys import SSHKey, ensure_key, known_hosts, new_host_keys
from kubefab.playbooks.lab.mounts import MOUNTS, remove_tree
from kubefab.playbooks.lab.settings import LabPaths, lab_paths
from kubefab.playbooks.lab.state import LabHost, LabState, load, save

Log = Callable[[str], None]


def host_names(subnet: IPv4Network, count: int) -> list[tuple[str, IPv4Address]]:
    return [(f"lab-{i}", network.host_ip(subnet, i)) for i in range(1, count + 1)]


def kubernetes_version() -> str:
    """The patch release the versions table pins for the default minor: what the lab runs."""
    return lab_stack().kubernetes


def up(
    count: int = 3,
    *,
    paths: LabPaths | None = None,
    subnet: IPv4Network = network.DEFAULT_SUBNET,
    bridge: str = network.DEFAULT_BRIDGE,
    cache: Path | None = None,
    log: Log = print,
) -> LabState:
    """Start `count` fresh hosts (whatever is left of an earlier lab is brought down first), wait for
    their sshd, write known_hosts and the lab inventory. The bundle is built first if it is missing."""
    paths = paths or lab_paths()
    if not 1 <= count <= network.max_hosts():
        raise ValueError(f"--hosts must be between 1 and {network.max_hosts()}, not {count}")
    network.check_subnet(subnet, [])  # a bad subnet must not take a running lab down
    down(paths, log=log)
    network.check_free(subnet, bridge)
    paths.root.mkdir(parents=True, exist_ok=True)
    rootfs = ensure_image(paths, log)
    ensure_bundle(paths.bundle, cache or source.cache_dir(), log=log)
    public_key = ensure_key(paths.key, "kubefab-lab")
    hosts.raise_inotify_limits(log)
    network.create_bridge(bridge, subnet)
    state = LabState(bridge, str(subnet))
    save(paths.state, state)  # from here on, `down` knows what to remove even if a host fails

    peers = host_names(subnet, count)
    state, host_keys = _start(paths, state, rootfs, public_key, peers, peers)
    paths.known_hosts.write_text(
        known_hosts(([name, str(ip)], key) for name, ip in peers for key in host_keys[name].values())
    )
    hosts.wait_for_ssh([str(ip) for _, ip in peers])
    paths.inventory.write_text(
        render(
            lab_inventory(
                state.hosts,
                subnet,
                paths.key,
                paths.known_hosts,
                paths.bundle,
                paths.cluster,
                kubernetes_version(),
                cgroup_v1=cgroups.legacy(MOUNTS.read_text()),
            )
        )
    )
    log(f"lab up: {count} host(s) on {bridge} {subnet}, ssh as kubefab with {paths.key}")
    return state


def _start(
    paths: LabPaths,
    state: LabState,
    rootfs: Path,
    public_key: str,
    new: list[tuple[str, IPv4Address]],
    peers: list[tuple[str, IPv4Address]],
) -> tuple[LabState, dict[str, dict[str, SSHKey]]]:
    """Clone, configure and boot each host of `new` (its /etc/hosts naming every one of `peers`), saving
    state.json after each so that `down` finds it; returns the state and each new host's SSH host keys."""
    subnet = IPv4Network(state.subnet)
    host_keys: dict[str, dict[str, SSHKey]] = {}
    for name, ip in new:
        host_dir = paths.hosts / name
        root = hosts.mount_clone(rootfs, host_dir)
        host_keys[name] = new_host_keys()
        address = IPv4Interface(f"{ip}/{subnet.prefixlen}")
        hosts.write_files(root, hosts.host_files(name, address, peers, host_keys[name], public_key))
        pid = hosts.start(name, host_dir, state.bridge)
        state = replace(state, hosts=(*state.hosts, LabHost(name, str(ip), pid, str(root))))
        save(paths.state, state)
    return state, host_keys


def add(count: int = 1, *, paths: LabPaths | None = None, log: Log = print) -> LabState:
    """Start `count` more hosts beside the running ones, from the same base image, and append them to the
    lab inventory as workers (the next deploy joins them). The running hosts are not touched."""
    paths = paths or lab_paths()
    state = load(paths.state)
    if state is None or not paths.inventory.is_file():
        raise ValueError("no lab is running: kubefab lab.up first")
    room = network.max_hosts() - len(state.hosts)
    if not 1 <= count <= room:
        raise ValueError(f"--hosts must be between 1 and {room} (the lab has {len(state.hosts)} hosts), not {count}")
    rootfs = current_image(paths)
    if rootfs is None:
        raise ValueError("the base image changed since the lab came up: `kubefab lab.up` to start afresh")
    peers = host_names(IPv4Network(state.subnet), len(state.hosts) + count)
    new = peers[len(state.hosts) :]
    started, host_keys = _start(paths, state, rootfs, ensure_key(paths.key, "kubefab-lab"), new, peers)
    with paths.known_hosts.open("a") as out:
        out.write(known_hosts(([name, str(ip)], key) for name, ip in new for key in host_keys[name].values()))
    hosts.wait_for_ssh([str(ip) for _, ip in new])
    paths.inventory.write_text(with_workers(paths.inventory.read_text(), started.hosts[len(state.hosts) :]))
    log(f"lab: added {', '.join(name for name, _ in new)} as workers in {paths.inventory}")
    return started


def down(paths: LabPaths | None = None, log: Log = print) -> None:
    """Stop every lab host and remove all it used: processes, cgroups, mounts, veths, the bridge, its
    files and the lab cluster's directory. Works from state.json and, without it, from what is found."""
    paths = paths or lab_paths()
    state = load(paths.state)
    recorded = state.hosts if state else ()
    for h in recorded:
        hosts.request_stop(h.pid, h.name)
    for h in recorded:
        hosts.wait_stopped(h.pid, h.name)

    groups = cgroups.lab_groups(MOUNTS.read_text())
    found = {g.name for lab in groups if lab.is_dir() for g in lab.iterdir() if g.is_dir()}
    if paths.hosts.is_dir():
        found |= {d.name for d in paths.hosts.iterdir()}
    names = {h.name for h in recorded} | found
    for name in sorted(names):
        hosts.clean_up(name, paths.hosts / name)
    for lab in groups:
        cgroups.remove_group(lab)
    bridge = state.bridge if state else network.DEFAULT_BRIDGE
    network.delete_links([*(network.VETH_PREFIX + n for n in sorted(names)), bridge])
    for leftover in (paths.state, paths.inventory, paths.known_hosts):
        leftover.unlink(missing_ok=True)
    remove_tree(paths.cluster)
    remove_tree(paths.hosts)
    if names:
        log(f"lab down: removed {', '.join(sorted(names))}")


def reboot(name: str, paths: LabPaths | None = None, log: Log = print) -> LabState:
    """Power-cycle one host: its systemd shuts down (what is still running after 30 s is killed, as when the
    power goes), then it boots again from the same disk (its overlay and containerd directory are kept) and
    gets its network back; returns the new state."""
    paths = paths or lab_paths()
    state = load(paths.state)
    if state is None:
        raise ValueError("no lab is running")
    host = state.host(name)
    hosts.request_stop(host.pid, name)
    hosts.wait_stopped(host.pid, name, timeout=30)
    for group in cgroups.host_groups(name):  # what a clean shutdown left (or all of it): the plug is pulled
        cgroups.kill_group(group)
    pid = hosts.start(name, paths.hosts / name, state.bridge)
    state = replace(state, hosts=tuple(replace(h, pid=pid) if h.name == name else h for h in state.hosts))
    save(paths.state, state)
    hosts.wait_for_ssh([host.ip])
    log(f"lab: {name} rebooted")
    return state


@dataclass(frozen=True)
class HostStatus:
    name: str
    ip: str
    pid: int | None
    running: bool
    ssh: bool


def status(paths: LabPaths | None = None) -> list[HostStatus]:
    state = load((paths or lab_paths()).state)
    if state is None:
        return []
    rows = []
    for h in state.hosts:
        running = h.pid is not None and hosts.is_nspawn_of(h.pid, h.name)
        rows.append(HostStatus(h.name, h.ip, h.pid, running, running and hosts.ssh_ready(h.ip)))
    return rows
