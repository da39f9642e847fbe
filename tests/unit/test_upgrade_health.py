"""What stops `kubefab upgrade` before anything changes (Upgrader.health), and a drain that a
PodDisruptionBudget blocks, through a scripted runner (tests/unit/scripted.py: a test double standing in for the
hosts; the upgrade itself runs on the lab in tests/lab/test_upgrade.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

from kubefab.playbooks import draining
from kubefab.playbooks.facts import parse
from kubefab.playbooks.remote import Output
from kubefab.playbooks.upgrader import CORDONED, Upgrader
from tests.conftest import Rendered
from tests.unit.scripted import ScriptedRunner


def node(name: str, ready: str = "True", cordoned: bool = False, ours: bool = False, kubelet: str = "") -> dict:
    return {
        "metadata": {"name": name, "annotations": {CORDONED: "1"} if ours else {}},
        "spec": {"unschedulable": True} if cordoned else {},
        "status": {"conditions": [{"type": "Ready", "status": ready}], "nodeInfo": {"kubeletVersion": kubelet}},
    }


VERSION = json.dumps({"gitVersion": "v1.36.3"})


def members(count: int) -> str:
    return json.dumps({"members": [{"ID": i, "name": f"m{i}"} for i in range(count)]})


def pdb(name: str, allowed: int) -> dict:
    status = {
        "expectedPods": 3,
        "currentHealthy": 2 + allowed,
        "desiredHealthy": 2,
        "disruptionsAllowed": allowed,
    }
    return {"metadata": {"namespace": "default", "name": name}, "status": status}


def health(c, answers: dict, facts: dict | None = None) -> list[str]:
    scripted = answers | ({} if any("/version" in k for k in answers) else {"get --raw /version": VERSION})
    runner = ScriptedRunner(c, scripted, facts=facts or {})
    return Upgrader(runner, log=lambda *_: None).health()  # type: ignore[arg-type]


def test_a_healthy_cluster_starts_and_every_kind_of_trouble_is_named(render_example: Callable[..., Rendered]) -> None:
    c = render_example().cluster
    names = [h.name for h in c.workers]
    healthy = {
        "get nodes -o json": json.dumps({"items": [node(n) for n in names]}),
        "member list -w json": members(len(c.etcd_hosts)),
        "get pdb -A -o json": json.dumps({"items": [pdb("web", 1)]}),
    }
    assert health(c, healthy) == []
    # A node this tool cordoned (an interrupted upgrade) is not someone else's cordon.
    ours = healthy | {"get nodes -o json": json.dumps({"items": [node(n, cordoned=True, ours=True) for n in names]})}
    assert health(c, ours) == []

    troubled = {
        "get nodes -o json": json.dumps(
            {"items": [node(names[0], ready="False"), node(names[1], cordoned=True)]}  # the third: no Node
        ),
        "endpoint health": Output("", f"https://{c.etcd_hosts[2].address}:2379 is unhealthy", 1),
        "member list -w json": members(len(c.etcd_hosts) - 1),
        "get pdb -A -o json": json.dumps({"items": [pdb("web", 0), pdb("other", 1)]}),
    }
    problems = health(c, troubled)
    assert problems == [
        f"{names[0]}: Node not Ready (False)",
        f"{names[1]}: cordoned by someone else; uncordon it or leave it out of the inventory",
        f"{names[2]}: no Node registered",
        f"etcd: not every member is healthy: https://{c.etcd_hosts[2].address}:2379 is unhealthy",
        f"etcd: {len(c.etcd_hosts) - 1} members, the inventory has {len(c.etcd_hosts)}",
        "PodDisruptionBudget default/web allows no disruption now (2 healthy, 2 required): draining a node would "
        "wait on it",
    ]


def test_versions_the_api_reports_are_checked_against_the_hosts_processes(
    render_example: Callable[..., Rendered],
) -> None:
    c = render_example().cluster
    cp, workers = c.control_plane, [h.name for h in c.workers]
    facts = {h.name: parse("running= kube-apiserver|1.36.3 kubelet|1.36.3\n") for h in c.hosts}
    answers = {
        "get nodes -o json": json.dumps({"items": [node(n, kubelet="v1.36.3") for n in workers]}),
        "member list -w json": members(len(c.etcd_hosts)),
        "get pdb -A -o json": json.dumps({"items": []}),
    }
    assert health(c, answers, facts) == []
    # Another apiserver answers at the first host's address; a Node's status names another kubelet.
    answers[f"--server=https://{cp[0].address}:{c.api.apiserver_port} get --raw /version"] = json.dumps(
        {"gitVersion": "v1.35.1"}
    )
    answers["get --raw /version"] = VERSION
    answers["get nodes -o json"] = json.dumps(
        {"items": [node(workers[0], kubelet="v1.35.1"), *(node(n, kubelet="v1.36.3") for n in workers[1:])]}
    )
    assert health(c, answers, facts) == [
        f"{cp[0].name}: the API reports kube-apiserver v1.35.1, the host's process runs 1.36.3",
        f"{workers[0]}: the API reports kubelet v1.35.1, the host's process runs 1.36.3",
    ]


def test_single_replica_workloads_are_named_before_a_drain_stops_them(render_example: Callable[..., Rendered]) -> None:
    c = render_example().cluster
    workloads = [
        {"kind": "Deployment", "metadata": {"namespace": "default", "name": "web"}, "spec": {"replicas": 3}},
        {"kind": "Deployment", "metadata": {"namespace": "shop", "name": "cart"}, "spec": {"replicas": 1}},
        {"kind": "StatefulSet", "metadata": {"namespace": "db", "name": "pg"}, "spec": {"replicas": 1}},
    ]
    runner = ScriptedRunner(c, {"get deployments,statefulsets -A -o json": json.dumps({"items": workloads})})
    assert Upgrader(runner, log=lambda *_: None).warnings() == [  # type: ignore[arg-type]
        "deployment shop/cart has 1 replica: it is down while its node drains",
        "statefulset db/pg has 1 replica: it is down while its node drains",
    ]


def test_a_drain_blocked_by_a_disruption_budget_names_the_pod_and_leaves_the_node_cordoned() -> None:
    ran: list[str] = []
    refused = (
        'evicting pod default/web-7d4b9c-abcde\nerror when evicting pods/"web-7d4b9c-abcde" -n "default" (will '
        "retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.\n"
        'There are pending pods in node "k8s-2" when an error occurred: drain did not complete within 30s'
    )

    def kubectl(step: str, args: str, check: bool = True, timeout: int | None = None) -> Output:
        ran.append(args)
        return Output("", refused, 1) if args.startswith("drain") else Output("", "", 0)

    blocked = draining.drain(kubectl, "k8s-2", 30)
    assert blocked is not None and 'pods/"web-7d4b9c-abcde"' in blocked and "disruption budget" in blocked
    assert ran == ["cordon k8s-2", "drain k8s-2 --ignore-daemonsets --delete-emptydir-data --timeout=30s"]
    assert not any(a.startswith("uncordon") for a in ran)

    def fine(step: str, args: str, check: bool = True, timeout: int | None = None) -> Output:
        return Output("", "", 0)

    assert draining.drain(fine, "k8s-2", 30) is None
