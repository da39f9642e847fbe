"""Each lab host is a distinct machine reachable over SSH as the sudo user, on one shared L2."""

from __future__ import annotations

import pytest
from labkit import Lab

from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.cgroups import legacy
from kubefab.playbooks.lab.mounts import MOUNTS

pytestmark = pytest.mark.lab


def test_sudo_user_logs_in_with_the_lab_key_on_every_host(lab: Lab) -> None:
    for h in lab.state.hosts:
        assert lab.run(h.name, "id -un") == "kubefab"
        assert lab.run(h.name, "sudo -n true && echo root-ok") == "root-ok"


def test_hosts_have_distinct_hostname_machine_id_and_host_key(lab: Lab) -> None:
    names = {lab.run(h.name, "hostname") for h in lab.state.hosts}
    machine_ids = {lab.run(h.name, "cat /etc/machine-id") for h in lab.state.hosts}
    host_keys = {lab.connections[h.name].transport.get_remote_server_key().get_base64() for h in lab.state.hosts}
    assert names == {h.name for h in lab.state.hosts}
    assert len(machine_ids) == len(host_keys) == len(lab.state.hosts)
    assert all(len(m) == 32 for m in machine_ids)


def test_hosts_reach_each_other_on_the_bridge(lab: Lab) -> None:
    for h in lab.state.hosts:
        for peer in lab.state.hosts:
            if peer is not h:
                lab.run(h.name, f"ping -c 1 -W 2 {peer.ip} && ping -c 1 -W 2 {peer.name}")


def test_hosts_boot_clean_with_systemd_and_no_route_out(lab: Lab) -> None:
    for h in lab.state.hosts:
        assert lab.run(h.name, "systemctl is-system-running --wait") == "running"
        assert lab.run(h.name, "ip -4 route show default") == ""
        # cgroup2 on a cgroup2 machine; on one with v1 controllers, those, writable (pods need them)
        expected = "tmpfs" if legacy(MOUNTS.read_text()) else "cgroup2fs"
        assert lab.run(h.name, "stat -f -c %T /sys/fs/cgroup") == expected
        if expected == "tmpfs":
            assert (
                lab.run(
                    h.name,
                    "sudo mkdir /sys/fs/cgroup/pids/probe && echo 7 | sudo tee "
                    "/sys/fs/cgroup/pids/probe/pids.max && sudo rmdir /sys/fs/cgroup/pids/probe",
                )
                == "7"
            )


def test_services_debian_enables_are_left_to_the_deploy(lab: Lab) -> None:
    host = lab.state.hosts[0].name
    assert lab.run(host, "systemctl is-enabled haproxy keepalived || true").split() == ["disabled", "disabled"]


def test_base_image_has_no_host_identity_and_no_release_binaries(lab: Lab) -> None:
    rootfs = lab.paths.rootfs
    assert not list((rootfs / "etc/ssh").glob("ssh_host_*"))
    assert (rootfs / "etc/machine-id").read_text() == ""
    assert not (rootfs / "var/lib/dbus/machine-id").exists()
    for binary in ("etcd", "etcdctl", "containerd", "runc", "kubelet"):
        assert not any((rootfs / d / binary).exists() for d in ("usr/bin", "usr/sbin", "usr/local/bin"))
    assert not list((rootfs / "var/lib/apt/lists").glob("*_Packages*"))


def test_status_reports_every_host_running_with_sshd(lab: Lab) -> None:
    rows = lifecycle.status(lab.paths)
    assert [(r.name, r.running, r.ssh) for r in rows] == [(h.name, True, True) for h in lab.state.hosts]
