"""`kubefab upgrade`, decided: from the versions each host's services run (facts.running) and the inventory's
target (its versions table stack), what moves, whether the version-skew policy allows it, and in which order.
Pure: no SSH here; playbooks/tasks/upgrade.py carries the stages out through the runner.

The order is the book's (2.5.1) and the skew policy's: etcd members one at a time when etcd's version changes,
then every kube-apiserver (one host at a time, out of HAProxy while it restarts), then the controller-managers
and schedulers, then the nodes' kubelet and kube-proxy one node (or `batch` nodes) at a time, drained first. A
kubelet is never newer than an apiserver, and a re-run starts from what is still running the old version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kubefab.playbooks.facts import Facts
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.versions import Stack, minor_of

# The services of each role whose version is the cluster's, in the order their stages run.
ETCD = ("etcd",)
APISERVER = ("kube-apiserver",)
CONTROLLERS = ("kube-controller-manager", "kube-scheduler")
NODE = ("kubelet", "kube-proxy")
KUBERNETES = (*APISERVER, *CONTROLLERS, *NODE)


@dataclass(frozen=True)
class Move:
    host: str
    service: str
    current: str
    target: str


@dataclass(frozen=True)
class Stage:
    kind: str  # etcd | apiserver | controllers | nodes
    hosts: tuple[str, ...]
    moves: tuple[Move, ...]

    @property
    def title(self) -> str:
        return f"{self.kind} on {', '.join(self.hosts)}"


def interrupted(stage: Stage | None, inventory: str) -> str:
    """What an upgrade interrupted during `stage` may have left out of service, and the command that puts it
    back (a re-run first returns every apiserver to rotation and uncordons the nodes it cordoned)."""
    left = ""
    if stage is not None and stage.kind == "nodes":
        left = f"; {', '.join(stage.hosts)} may be left cordoned (annotated as cordoned by kubefab's upgrade)"
    elif stage is not None and stage.kind == "apiserver":
        left = f"; the apiserver on {stage.hosts[0]} may be left out of HAProxy's rotation"
    during = f" during {stage.title}" if stage is not None else ""
    return (
        f"upgrade interrupted{during}{left}\nrun `kubefab upgrade --inventory {inventory}` again: it puts them "
        "back and continues from the versions the cluster runs"
    )


def expected(host: Host) -> tuple[str, ...]:
    """The versioned services a host of these roles runs."""
    return (
        (ETCD if host.has("etcd") else ())
        + ((*APISERVER, *CONTROLLERS) if host.has("control_plane") else ())
        + (NODE if host.has("worker") else ())
    )


def target_of(service: str, stack: Stack) -> str:
    return stack.etcd if service == "etcd" else stack.kubernetes


def moves(c: Cluster, facts: Mapping[str, Facts], stack: Stack) -> list[Move]:
    """Every running service whose version is not the target's (a service that does not run is deploy's)."""
    out = []
    for h in (h for h in c.hosts if h.name in facts):
        running = facts[h.name].running
        for s in expected(h):
            if s in running and running[s] != target_of(s, stack):
                out.append(Move(h.name, s, running[s], target_of(s, stack)))
    return out


def disagreements(facts: Mapping[str, Facts], reported: Mapping[tuple[str, str], str]) -> list[str]:
    """Where the API (each apiserver's /version, each Node's kubelet) reports another version than the process the
    host runs: the upgrade would be decided from one and act on the other."""
    out = []
    for (host, service), version in sorted(reported.items()):
        running = facts[host].running.get(service) if host in facts else None
        if running is not None and version.removeprefix("v") != running:
            out.append(f"{host}: the API reports {service} {version}, the host's process runs {running}")
    return out


def single_replicas(workloads: Sequence[dict]) -> list[str]:
    """Deployments and StatefulSets (`kubectl get -o json` items) with one replica: draining the node it runs on
    stops it until it runs elsewhere (no PodDisruptionBudget can keep it up)."""
    return [
        f"{w['kind'].lower()} {w['metadata']['namespace']}/{w['metadata']['name']} has 1 replica: it is down while "
        "its node drains"
        for w in workloads
        if (w.get("spec") or {}).get("replicas") == 1
    ]


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def skew_problems(c: Cluster, facts: Mapping[str, Facts], stack: Stack, inventory: str) -> list[str]:
    """What the version-skew policy refuses: a jump of more than one minor (with the two commands that do it), a
    minor downgrade, etcd going back a version."""
    target = stack.kubernetes
    read = [h for h in c.hosts if h.name in facts]
    running = [(h.name, s, v) for h in read for s, v in facts[h.name].running.items() if s in KUBERNETES]
    problems = []
    oldest = min((minor_of(v) for _, _, v in running), key=_key, default=None)
    if oldest is not None and _key(minor_of(target))[1] - _key(oldest)[1] > 1:
        step = f"{_key(oldest)[0]}.{_key(oldest)[1] + 1}"
        problems.append(
            f"{oldest} -> {minor_of(target)} skips a minor (Kubernetes upgrades one minor at a time): set "
            f'kubernetes_version: "{step}" in {inventory} and run `kubefab upgrade --inventory {inventory}`, then '
            f'set "{minor_of(target)}" and run it again'
        )
    for host, service, version in running:
        if _key(minor_of(version)) > _key(minor_of(target)):
            problems.append(f"{host}: {service} runs {version}; {target} would be a minor downgrade, not supported")
    for h in read:
        version = facts[h.name].running.get("etcd")
        if version and _key(version) > _key(stack.etcd):
            problems.append(f"{h.name}: etcd runs {version}; {stack.etcd} would be a downgrade, which is not supported")
    return problems


def stages(c: Cluster, pending: Sequence[Move], batch: int = 1) -> list[Stage]:
    """The ordered stages for `pending`: per host for etcd, apiservers and controllers; nodes in `batch`es."""
    by_host: dict[str, list[Move]] = {}
    for m in pending:
        by_host.setdefault(m.host, []).append(m)
    out: list[Stage] = []
    for kind, services in (("etcd", ETCD), ("apiserver", APISERVER), ("controllers", CONTROLLERS)):
        for h in c.hosts:
            mine = tuple(m for m in by_host.get(h.name, ()) if m.service in services)
            if mine:
                out.append(Stage(kind, (h.name,), mine))
    nodes = [h.name for h in c.hosts if any(m.service in NODE for m in by_host.get(h.name, ()))]
    for i in range(0, len(nodes), max(1, batch)):
        group = tuple(nodes[i : i + max(1, batch)])
        out.append(Stage("nodes", group, tuple(m for n in group for m in by_host[n] if m.service in NODE)))
    return out


def deploy_refusal(c: Cluster, facts: Mapping[str, Facts], stack: Stack, inventory: str) -> str | None:
    """deploy on a cluster that runs other versions: that is an upgrade (or a downgrade), not a deploy."""
    found = moves(c, facts, stack)
    if not found:
        return None
    shown = ", ".join(f"{m.host} {m.service} {m.current}" for m in found[:4]) + (" ..." if len(found) > 4 else "")
    return (
        f"the cluster runs other versions than the inventory's ({shown}; the inventory asks Kubernetes "
        f"{stack.kubernetes}, etcd {stack.etcd}): run `kubefab upgrade --inventory {inventory}`"
    )
