"""The facts parser over sample outputs."""

from __future__ import annotations

from kubefab.playbooks import facts
from tests.facts_samples import CENTOS7, DEBIAN


def test_parse_debian_facts() -> None:
    f = facts.parse(DEBIAN)
    assert (f.family, f.arch, f.cgroup_version, f.swap, f.supported) == ("debian", "amd64", 2, (), True)
    assert f.listening == {22: "sshd", 2379: "etcd"}
    assert f.etcd_member and f.ntp_synchronized and not f.firewalld_active


def test_parse_centos7_facts() -> None:
    f = facts.parse(CENTOS7)
    assert (f.family, f.os, f.cgroup_version, f.selinux, f.package_manager) == (
        "rhel",
        "centos 7",
        1,
        "Enforcing",
        "yum",
    )
    assert f.swap == ("/dev/dm-1",) and f.fstab_swap == ("/dev/mapper/centos-swap",)
    assert f.firewalld_active and f.ntp_synchronized is False and f.supported
