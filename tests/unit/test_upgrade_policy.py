"""playbooks.upgrade, pure: what moves, what the skew policy refuses, the order of the stages; and the facts line
that says what each service runs."""

from __future__ import annotations

import dataclasses

import pytest

from kubefab.playbooks import facts, upgrade
from kubefab.playbooks.inventory import load
from kubefab.playbooks.versions import stack
from tests.conftest import EXAMPLE
from tests.facts_samples import DEBIAN

KUBE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")


@pytest.fixture
def cluster():
    return load(EXAMPLE)


def running(cluster, kube: str, etcd: str = "3.7.3", **per_host: dict[str, str]) -> dict[str, facts.Facts]:
    base = facts.parse(DEBIAN)
    out = {}
    for h in cluster.hosts:
        versions = {s: kube for s in upgrade.expected(h) if s != "etcd"} | ({"etcd": etcd} if h.has("etcd") else {})
        out[h.name] = dataclasses.replace(base, running=versions | per_host.get(h.name.replace("-", "_"), {}))
    return out


def test_the_facts_line_reads_each_running_service_version() -> None:
    parsed = facts.parse(DEBIAN + "running= etcd|3.7.3 kube-apiserver|1.36.3 kubelet|1.36.3\n")
    assert parsed.running == {"etcd": "3.7.3", "kube-apiserver": "1.36.3", "kubelet": "1.36.3"}
    assert '/proc/"$pid"/exe --version' in facts.COMMAND and "kube-proxy" in facts.COMMAND


def test_moves_are_what_runs_another_version_in_the_books_order(cluster) -> None:
    target = stack("1.37", {"etcd": "3.7.3"})
    found = running(cluster, "1.36.3", k8s_3={"kubelet": "1.37.2", "kube-proxy": "1.37.2"})
    moves = upgrade.moves(cluster, found, target)
    assert {(m.host, m.service) for m in moves if m.host == "k8s-3"} == {
        ("k8s-3", "kube-apiserver"),
        ("k8s-3", "kube-controller-manager"),
        ("k8s-3", "kube-scheduler"),
    }
    stages = upgrade.stages(cluster, moves)
    kinds = [(s.kind, s.hosts) for s in stages]
    assert kinds == [
        ("apiserver", ("k8s-1",)),
        ("apiserver", ("k8s-2",)),
        ("apiserver", ("k8s-3",)),
        ("controllers", ("k8s-1",)),
        ("controllers", ("k8s-2",)),
        ("controllers", ("k8s-3",)),
        ("nodes", ("k8s-1",)),
        ("nodes", ("k8s-2",)),
    ]  # k8s-3's node already runs the target: a re-run continues where the cluster is
    assert [s.hosts for s in upgrade.stages(cluster, moves, batch=2) if s.kind == "nodes"] == [("k8s-1", "k8s-2")]
    assert upgrade.moves(cluster, running(cluster, "1.37.2"), target) == []


def test_etcd_goes_first_one_member_at_a_time(cluster) -> None:
    target = stack("1.37", {"etcd": "3.7.3"})
    stages = upgrade.stages(cluster, upgrade.moves(cluster, running(cluster, "1.37.2", etcd="3.6.14"), target))
    assert [(s.kind, s.hosts, s.moves[0].current, s.moves[0].target) for s in stages] == [
        ("etcd", (h.name,), "3.6.14", "3.7.3") for h in cluster.etcd_hosts
    ]


def test_skew_policy_refuses_a_skipped_minor_with_the_two_commands_and_any_downgrade(cluster) -> None:
    target = stack("1.37", {"etcd": "3.7.3"})
    assert upgrade.skew_problems(cluster, running(cluster, "1.36.3"), target, "inv.yaml") == []
    assert upgrade.skew_problems(cluster, running(cluster, "1.37.1"), target, "inv.yaml") == []  # a patch
    (jump,) = upgrade.skew_problems(cluster, running(cluster, "1.35.4"), target, "inv.yaml")
    assert "1.35 -> 1.37 skips a minor" in jump
    assert 'kubernetes_version: "1.36" in inv.yaml and run `kubefab upgrade --inventory inv.yaml`' in jump
    assert 'then set "1.37" and run it again' in jump
    down = upgrade.skew_problems(cluster, running(cluster, "1.37.2", etcd="3.7.3"), stack("1.36"), "inv.yaml")
    assert any("minor downgrade" in p for p in down) and any("etcd runs 3.7.3" in p for p in down)


def test_deploy_on_a_cluster_running_other_versions_points_to_upgrade(cluster) -> None:
    target = stack("1.37", {"etcd": "3.7.3"})
    said = upgrade.deploy_refusal(cluster, running(cluster, "1.36.3"), target, "inventory/x.yaml")
    assert said is not None and "run `kubefab upgrade --inventory inventory/x.yaml`" in said
    assert "k8s-1 kube-apiserver 1.36.3" in said
    assert upgrade.deploy_refusal(cluster, running(cluster, "1.37.2"), target, "x") is None
    fresh = {n: dataclasses.replace(f, running={}) for n, f in running(cluster, "1.36.3").items()}
    assert upgrade.deploy_refusal(cluster, fresh, target, "x") is None  # a new cluster is deploy's
    for s in KUBE:
        assert s in facts.VERSIONED_SERVICES


def test_an_interruption_says_what_it_may_have_left_out_of_service_and_how_to_put_it_back(cluster) -> None:
    stages = upgrade.stages(cluster, upgrade.moves(cluster, running(cluster, "1.36.3"), stack("1.37")), batch=2)
    nodes = next(s for s in stages if s.kind == "nodes")
    apiserver = next(s for s in stages if s.kind == "apiserver")
    said = upgrade.interrupted(nodes, "inv.yaml")
    assert f"{', '.join(nodes.hosts)} may be left cordoned" in said and "kubefab upgrade --inventory inv.yaml" in said
    assert f"the apiserver on {apiserver.hosts[0]} may be left out of HAProxy's rotation" in (
        upgrade.interrupted(apiserver, "inv.yaml")
    )
    assert "cordoned" not in upgrade.interrupted(None, "inv.yaml")
