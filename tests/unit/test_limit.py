"""`--limit`: which hosts, and what a limited run refuses (pure: playbooks.limit and preflight's etcd rule)."""

from __future__ import annotations

import dataclasses

import pytest

from kubefab.pki.store import Row
from kubefab.playbooks import facts, preflight
from kubefab.playbooks.inventory import load
from kubefab.playbooks.limit import LimitError, limited_hosts, refusals, without_cluster_wide
from tests.conftest import EXAMPLE
from tests.facts_samples import DEBIAN

KEPT = [Row("kubernetes CA", "pki/ca.crt", None, "kept"), Row("apiserver", "pki/apiserver.crt", None, "kept")]


@pytest.fixture
def cluster():
    return load(EXAMPLE)


def test_limit_names_hosts_in_inventory_order_or_is_refused_naming_the_known_ones(cluster) -> None:
    assert limited_hosts(cluster, None) is None
    assert [h.name for h in limited_hosts(cluster, "k8s-3, k8s-1")] == ["k8s-1", "k8s-3"]
    with pytest.raises(LimitError, match=r"k8s-9 not in the inventory .*example.yaml; hosts: k8s-1, k8s-2, k8s-3"):
        limited_hosts(cluster, "k8s-1,k8s-9")
    with pytest.raises(LimitError, match="names no host"):
        limited_hosts(cluster, " , ")


def test_a_limited_run_refuses_rotation_new_secrets_and_a_named_cluster_wide_phase() -> None:
    phases = ["prepare", "certificates", "nodes", "addons"]
    assert refusals(phases, [], KEPT, new_secrets=False) == []
    joining = [*KEPT, Row("kubelet/k8s-4", "pki/hosts/k8s-4/kubelet.crt", None, "issued")]
    assert refusals(phases, [], joining, new_secrets=False) == []  # a new host's own leaf
    reissued = [*KEPT, Row("apiserver", "pki/apiserver.crt", None, "reissued: DNS SANs ['x'] changed")]
    (why,) = refusals(phases, [], reissued, new_secrets=False)
    assert "apiserver (reissued: DNS SANs ['x'] changed)" in why and "without --limit" in why
    (why,) = refusals(phases, [], [Row("etcd CA", "pki/etcd/ca.crt", None, "created")], new_secrets=False)
    assert "etcd CA (created)" in why
    (why,) = refusals(phases, [], KEPT, new_secrets=True)
    assert "secrets" in why
    (why,) = refusals(phases, ["addons"], KEPT, new_secrets=False)
    assert "addons is cluster-wide" in why
    assert without_cluster_wide(phases) == ["prepare", "certificates", "nodes"]


def texts(cluster, etcd_data: dict[str, str]) -> dict[str, facts.Facts]:
    out = {}
    for h in cluster.hosts:
        text = DEBIAN.replace("hostname=k8s-1", f"hostname={h.name}")
        out[h.name] = facts.parse(text.replace("etcd_member=yes", f"etcd_member={etcd_data.get(h.name, 'yes')}"))
    return out


def test_preflight_under_limit_refuses_an_etcd_host_without_data_as_a_membership_change(cluster) -> None:
    hosts = [cluster.host("k8s-3")]
    read = texts(cluster, {"k8s-3": "no"})
    found = preflight.check(cluster, {"k8s-3": read["k8s-3"]}, "amd64", 1700000000, hosts)
    assert {f.host for f in found} == {"k8s-3"}  # only the limited host's facts were read, only it is judged
    (etcd,) = [f for f in found if f.check == "etcd data"]
    assert etcd.status == "fail" and "membership change" in etcd.detail and "without --limit" in etcd.detail
    found = preflight.check(cluster, {"k8s-3": texts(cluster, {})["k8s-3"]}, "amd64", 1700000000, hosts)
    assert not [f for f in found if f.status == "fail"]
    # Unlimited, a new cluster on hosts without data is fine: the rule is the limit's.
    fresh = {n: dataclasses.replace(f, etcd_member=False) for n, f in read.items()}
    assert not [f for f in preflight.check(cluster, fresh, "amd64", 1700000000) if f.status == "fail"]
