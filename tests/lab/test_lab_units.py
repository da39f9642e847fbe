"""The lab's pure parts: parsers, addressing, roles, packing. No root, no hosts: these run everywhere."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
import yaml

from kubefab.playbooks.archive import tar_gz
from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.aptsource import AptSource, parse_deb822, parse_one_line, pick_source
from kubefab.playbooks.lab.cgroups import enter_then_exec, hierarchies, legacy, make_group, remove_group, v1_controllers
from kubefab.playbooks.lab.hosts import host_files, passwd_ids
from kubefab.playbooks.lab.image import PACKAGES, image_key
from kubefab.playbooks.lab.inventory import lab_inventory, render, roles, with_workers
from kubefab.playbooks.lab.keys import known_hosts, new_ed25519, new_host_keys
from kubefab.playbooks.lab.mounts import mounts_under
from kubefab.playbooks.lab.network import check_subnet, gateway, host_ip, machine_networks, vip
from kubefab.playbooks.lab.settings import LabPaths, lab_dir
from kubefab.playbooks.lab.state import LabHost, LabState, from_json, save, to_json

SOURCES = """Types: deb
# a comment
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_and_suite_come_from_the_release_suite_of_apt_sources() -> None:
    assert pick_source(parse_deb822(SOURCES)) == AptSource("http://mirror.invalid/debian", "bookworm")
    one_line = "deb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian bookworm main contrib\n"
    assert pick_source(parse_one_line(one_line)) == AptSource("http://m.invalid/debian", "bookworm")
    assert pick_source(parse_deb822(SOURCES.replace("Components: main", "Components: contrib"))) is None


def test_archives_are_byte_identical_whatever_the_member_order() -> None:
    a = tar_gz({"./": None, "./bridge": b"b", "./loopback": b"l"})
    b = tar_gz({"./loopback": b"l", "./bridge": b"b", "./": None})
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    with tarfile.open(fileobj=io.BytesIO(a)) as tar:
        assert [(m.name, m.mtime, m.uid, m.mode) for m in tar.getmembers()] == [
            (".", 0, 0, 0o755),
            ("./bridge", 0, 0, 0o755),
            ("./loopback", 0, 0, 0o755),
        ]


def test_base_image_is_rebuilt_only_when_its_package_list_or_suite_changes() -> None:
    key = image_key(PACKAGES, "bookworm")
    assert image_key(tuple(reversed(PACKAGES)), "bookworm") == key
    assert image_key((*PACKAGES, "strace"), "bookworm") != key != image_key(PACKAGES, "trixie")
    assert {"openssh-server", "haproxy", "keepalived", "python3"} <= set(PACKAGES)
    assert not {"etcd-server", "containerd", "runc"} & set(PACKAGES)  # release binaries come from the bundle


def test_addressing_puts_machine_hosts_and_vip_in_the_lab_subnet() -> None:
    subnet = IPv4Network("10.77.0.0/24")
    assert str(gateway(subnet)) == "10.77.0.1/24"
    assert host_ip(subnet, 1) == IPv4Address("10.77.0.11") and host_ip(subnet, 12) == IPv4Address("10.77.0.22")
    assert vip(subnet) == IPv4Address("10.77.0.100")


def test_lab_subnet_must_be_private_large_enough_and_unused() -> None:
    check_subnet(IPv4Network("10.77.0.0/24"), [IPv4Network("192.0.2.0/24")])
    for bad, used in (("192.168.77.0/24", []), ("10.77.0.0/25", []), ("10.77.0.0/24", ["10.0.0.0/8"])):
        with pytest.raises(ValueError):
            check_subnet(IPv4Network(bad), [IPv4Network(u) for u in used])
    ip_addr = (
        '[{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},'
        ' {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.0.2.2", "prefixlen": 24}]},'
        ' {"ifname": "kflab0", "addr_info": [{"family": "inet", "local": "10.77.0.1", "prefixlen": 24}]}]'
    )
    assert machine_networks(ip_addr, ignore="kflab0") == [IPv4Network("192.0.2.0/24")]


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, [["etcd", "control_plane", "worker"]]),
        (2, [["etcd", "control_plane", "worker", "lb"], ["worker", "lb"]]),
        (3, [["etcd", "control_plane", "worker", "lb"]] * 2 + [["etcd", "control_plane", "worker"]]),
        (5, [["etcd", "control_plane", "worker", "lb"]] * 2 + [["etcd", "control_plane", "worker"]] + [["worker"]] * 2),
    ],
)
def test_roles_keep_an_odd_etcd_and_two_lb_hosts(count: int, expected: list[list[str]]) -> None:
    assert [roles(i, count) for i in range(count)] == expected


def test_inventory_of_one_host_has_no_vip() -> None:
    hosts = (LabHost("lab-1", "10.77.0.11", 1, "/r"),)
    doc = lab_inventory(hosts, IPv4Network("10.77.0.0/24"), Path("/k"), Path("/kh"), Path("/b"), Path("/c"), "1.35.6")
    assert doc["api"]["vip"] is None and doc["hosts"][0]["roles"] == ["etcd", "control_plane", "worker"]
    assert "cgroup_v1" not in doc  # refused by default: only a lab on a v1 machine allows it
    on_v1 = lab_inventory(
        hosts, IPv4Network("10.77.0.0/24"), Path("/k"), Path("/kh"), Path("/b"), Path("/c"), "1.35.6", cgroup_v1=True
    )
    assert on_v1["cgroup_v1"] == "allow"


def test_added_hosts_are_appended_as_workers_and_the_rest_is_kept() -> None:
    hosts = tuple(LabHost(f"lab-{i}", f"10.77.0.{10 + i}", i, "/r") for i in (1, 2, 3))
    doc = lab_inventory(hosts, IPv4Network("10.77.0.0/24"), Path("/k"), Path("/kh"), Path("/b"), Path("/c"), "1.35.6")
    doc["etcd"] = {"snapshots": {"keep": 3}}  # an operator's edit survives
    grown = yaml.safe_load(with_workers(render(doc), (LabHost("lab-4", "10.77.0.14", 4, "/r"),)))
    assert grown["hosts"][:3] == doc["hosts"]
    assert grown["hosts"][3] == {"name": "lab-4", "ip": "10.77.0.14", "roles": ["worker"]}
    assert {k: v for k, v in grown.items() if k != "hosts"} == {k: v for k, v in doc.items() if k != "hosts"}


def test_adding_hosts_is_refused_before_anything_starts(tmp_path: Path) -> None:
    paths = LabPaths(tmp_path)
    with pytest.raises(ValueError, match="no lab is running"):
        lifecycle.add(1, paths=paths)
    hosts = tuple(LabHost(f"lab-{i}", f"10.77.0.{10 + i}", None, "/r") for i in range(1, 4))
    save(paths.state, LabState("kflab0", "10.77.0.0/24", hosts))
    paths.inventory.write_text("hosts: []\n")
    for count in (0, 88):
        with pytest.raises(ValueError, match=f"--hosts must be between 1 and .*, not {count}"):
            lifecycle.add(count, paths=paths)
    with pytest.raises(ValueError, match="base image changed"):  # no image built here: none to clone
        lifecycle.add(1, paths=paths)
    assert not paths.hosts.exists()


def test_host_files_give_each_host_its_own_identity_and_address() -> None:
    keys = new_host_keys()
    peers = [("lab-1", IPv4Address("10.77.0.11")), ("lab-2", IPv4Address("10.77.0.12"))]
    a = host_files("lab-1", IPv4Interface("10.77.0.11/24"), peers, keys, "ssh-ed25519 AAAA lab")
    b = host_files("lab-2", IPv4Interface("10.77.0.12/24"), peers, new_host_keys(), "ssh-ed25519 AAAA lab")
    assert a["etc/machine-id"].content != b["etc/machine-id"].content
    assert a["etc/ssh/ssh_host_ed25519_key"].content != b["etc/ssh/ssh_host_ed25519_key"].content
    assert a["etc/ssh/ssh_host_ed25519_key"].mode == 0o600
    assert "Address=10.77.0.11/24" in str(a["etc/systemd/network/80-container-host0.network"].content)
    assert "10.77.0.12\tlab-2" in str(a["etc/hosts"].content)
    assert a["home/kubefab/.ssh/authorized_keys"].owner == "kubefab"
    passwd = "root:x:0:0::/root:/bin/sh\nkubefab:*:1000:1000::/home/kubefab:/bin/bash\n"
    assert passwd_ids(passwd, "kubefab") == (1000, 1000)


def test_known_hosts_lists_every_name_of_a_host_with_its_key() -> None:
    key = new_ed25519()
    assert known_hosts([(["lab-1", "10.77.0.11"], key)]) == f"lab-1,10.77.0.11 {key.public}\n"
    assert key.public.startswith("ssh-ed25519 ") and b"OPENSSH PRIVATE KEY" in key.private


def test_cgroup_hierarchies_and_mounts_are_read_from_proc_mounts() -> None:
    mounts = (
        "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
        "cgroup /sys/fs/cgroup/systemd cgroup rw,name=systemd 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
        "overlay /lab/hosts/lab-1/root overlay rw 0 0\n"
        "proc /lab/hosts/lab-1/root/proc proc rw 0 0\n"
        "overlay /lab/hosts/lab-10/root overlay rw 0 0\n"
    )
    assert hierarchies(mounts) == [
        Path("/sys/fs/cgroup/memory"),
        Path("/sys/fs/cgroup/systemd"),
        Path("/sys/fs/cgroup/unified"),
    ]
    assert v1_controllers(mounts) == [Path("/sys/fs/cgroup/memory")] and legacy(mounts)
    assert not legacy("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n")
    assert mounts_under(Path("/lab/hosts/lab-1"), mounts) == [
        Path("/lab/hosts/lab-1/root/proc"),
        Path("/lab/hosts/lab-1/root"),
    ]


def test_new_cpuset_groups_take_their_parents_cpus_and_memory_nodes() -> None:
    cpuset = Path("/sys/fs/cgroup/cpuset")
    if not (cpuset / "cpuset.cpus").is_file():
        pytest.skip("this machine has no cgroup v1 cpuset hierarchy")
    group = cpuset / "kubefab-lab-test" / "host"
    try:
        make_group(group)
        for name in ("cpuset.cpus", "cpuset.mems"):
            assert (group / name).read_text() == (cpuset / name).read_text() != "\n"
        (group / "cgroup.procs").write_text(f"{os.getpid()}\n")  # joinable: it has CPUs and memory nodes
        (cpuset / "cgroup.procs").write_text(f"{os.getpid()}\n")
    finally:
        remove_group(group.parent)


def test_nspawn_enters_its_cgroups_before_it_runs() -> None:
    argv = enter_then_exec([Path("/cg/a"), Path("/cg/b")], ["systemd-nspawn", "-M", "lab-1"])
    assert argv[:3] == ["sh", "-c", 'echo $$ > /cg/a/cgroup.procs && echo $$ > /cg/b/cgroup.procs && exec "$@"']
    assert argv[3:] == ["sh", "systemd-nspawn", "-M", "lab-1"]


def test_state_round_trips_through_json() -> None:
    state = LabState("kflab0", "10.77.0.0/24", (LabHost("lab-1", "10.77.0.11", 42, "/r"),))
    assert from_json(to_json(state)) == state


def test_lab_dir_is_never_inside_the_source_tree(tmp_path: Path) -> None:
    assert lab_dir({"KUBEFAB_LAB_DIR": str(tmp_path)}, repo=Path("/src/kubefab")) == tmp_path
    with pytest.raises(ValueError, match="inside the source tree"):
        lab_dir({"KUBEFAB_LAB_DIR": "/src/kubefab/lab"}, repo=Path("/src/kubefab"))
