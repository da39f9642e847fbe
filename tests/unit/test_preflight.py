"""Preflight over parsed facts: pure, every check once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubefab.playbooks import facts, preflight
from kubefab.playbooks.inventory import load
from tests.conftest import EXAMPLE
from tests.facts_samples import CENTOS7, DEBIAN


@pytest.fixture
def cluster():
    return load(EXAMPLE)


def findings(cluster, overrides: dict[str, str], arch: str = "amd64", now: float = 1700000000):
    texts = {h.name: DEBIAN.replace("hostname=k8s-1", f"hostname={h.name}") for h in cluster.hosts}
    texts |= overrides
    return preflight.check(cluster, {n: facts.parse(t) for n, t in texts.items()}, arch, now)


def failed(found) -> set[tuple[str, str]]:
    return {(f.host, f.check) for f in found if f.status == "fail"}


def test_preflight_passes_on_good_hosts(cluster) -> None:
    assert not failed(findings(cluster, {}))


def test_preflight_port_held_by_another_process(cluster) -> None:
    busy = DEBIAN.replace('192.168.10.11:2379|users:(("etcd"', '0.0.0.0:6443|users:(("nginx"')
    found = findings(cluster, {"k8s-2": busy.replace("hostname=k8s-1", "hostname=k8s-2")})
    assert ("k8s-2", "ports free") in failed(found)
    detail = next(f.detail for f in found if f.host == "k8s-2" and f.check == "ports free")
    assert "6443 held by nginx" in detail


def test_preflight_own_services_do_not_count_as_busy(cluster) -> None:
    assert ("k8s-1", "ports free") not in failed(findings(cluster, {}))


def test_preflight_centos7_host(cluster) -> None:
    found = findings(cluster, {"k8s-3": CENTOS7})
    assert ("k8s-3", "cgroup") in failed(found)  # v1 refused
    warnings = {(f.host, f.check) for f in found if f.status == "warn"}
    assert {("k8s-3", "swap"), ("k8s-3", "time")} <= warnings
    assert ("k8s-3", "operating system") not in failed(found)


def without_etcd_data(name: str) -> str:
    return DEBIAN.replace("hostname=k8s-1", f"hostname={name}").replace("etcd_member=yes", "etcd_member=no")


def test_preflight_lets_one_new_etcd_member_join_as_a_learner(cluster) -> None:
    found = findings(cluster, {"k8s-3": without_etcd_data("k8s-3")})
    assert not failed(found)
    detail = next(f.detail for f in found if f.host == "k8s-3" and f.check == "etcd data")
    assert "joins the running cluster (k8s-1, k8s-2) as a learner" in detail


def test_preflight_refuses_two_new_etcd_members_at_once(cluster) -> None:
    found = findings(cluster, {n: without_etcd_data(n) for n in ("k8s-2", "k8s-3")})
    assert {("k8s-2", "etcd data"), ("k8s-3", "etcd data")} <= failed(found)
    detail = next(f.detail for f in found if f.host == "k8s-3" and f.check == "etcd data")
    assert "2 new etcd members at once (k8s-2, k8s-3)" in detail


def test_preflight_warns_of_a_stopped_but_enabled_firewalld(cluster) -> None:
    """firewall: open adds rules to a running firewalld only; one that starts at the next boot would block ports."""
    stopped = DEBIAN.replace("hostname=k8s-1", "hostname=k8s-2") + "firewalld_enabled=enabled\n"
    found = findings(cluster, {"k8s-2": stopped})
    assert [(f.host, f.status) for f in found if f.check == "firewall"] == [("k8s-2", "warn")]
    assert "enabled but stopped" in next(f.detail for f in found if f.check == "firewall")


def test_preflight_cgroup_v1_allowed(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text()) | {"cgroup_v1": "allow"}
    (tmp_path / "i.yaml").write_text(yaml.safe_dump(data))
    c = load(tmp_path / "i.yaml")
    found = findings(c, {"k8s-3": CENTOS7.replace("etcd_member=no", "etcd_member=yes")})
    assert ("k8s-3", "cgroup") not in failed(found)


def test_preflight_clock_skew_arch_os_and_names(cluster) -> None:
    skewed = DEBIAN.replace("time=1700000000", "time=1700000400").replace("hostname=k8s-1", "hostname=k8s-2")
    found = findings(
        cluster,
        {"k8s-2": skewed, "k8s-3": DEBIAN.replace("os_version=12", "os_version=10").replace("x86_64", "aarch64")},
    )
    assert {("k8s-2", "time"), ("k8s-3", "operating system"), ("k8s-3", "architecture")} <= failed(found)
    assert {("k8s-1", "host name"), ("k8s-3", "host name")} <= failed(found)  # k8s-3 also says hostname=k8s-1
