"""`kubefab upgrade`, carried out: health and an etcd snapshot before anything changes, then playbooks.upgrade's
stages through the runner, each on its own hosts (a runner limited to them, sharing the main one's connections
and facts), and a full converge at the end. Kubernetes is reached with kubectl on a control-plane host through the
VIP (components.control_plane.kubectl), so the API answers whichever apiserver restarts.

Re-runnable: what still runs an old version is what the stages are made of; nodes this tool cordoned carry an
annotation, and every run starts by putting back in service what an interrupted one left out (HAProxy servers in
drain, nodes it cordoned) once they run the target version."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kubefab.playbooks import draining, upgrade
from kubefab.playbooks.components.control_plane import APISERVER, CONTROLLER_MANAGER, SCHEDULER, kubectl
from kubefab.playbooks.components.etcd import ETCD, endpoint, etcdctl
from kubefab.playbooks.components.load_balancer import set_server
from kubefab.playbooks.components.node import KUBE_PROXY, KUBELET
from kubefab.playbooks.model import Host
from kubefab.playbooks.remote import StepFailed
from kubefab.playbooks.runner import DeployFailed, Runner

CORDONED = "kubefab.io/upgrade-cordoned"  # on a Node this tool cordoned (and will uncordon)
COMPONENTS = {
    "etcd": ("etcd", (ETCD,)),
    "apiserver": ("control-plane", (APISERVER,)),
    "controllers": ("control-plane", (CONTROLLER_MANAGER, SCHEDULER)),
    "nodes": ("nodes", (KUBELET, KUBE_PROXY)),
}


class UpgradeFailed(Exception):
    pass


@dataclass(frozen=True)
class Done:
    stage: upgrade.Stage
    seconds: float


class Upgrader:
    def __init__(self, r: Runner, log: Callable[[str, str], None], drain_timeout: int = 300) -> None:
        self.r, self.c, self.log = r, r.cluster, log
        self.drain_timeout = drain_timeout
        self.api_host = self.c.control_plane[0]
        self.done: list[Done] = []

    # -- reaching the API and etcd --------------------------------------------------------------------------

    def kubectl(self, step: str, args: str, check: bool = True, timeout: int | None = None):
        return self.r.run(self.api_host, f"upgrade: {step}", kubectl(args), check=check, timeout=timeout)

    def nodes(self) -> dict[str, dict]:
        items = json.loads(self.kubectl("read the nodes", "get nodes -o json").stdout)["items"]
        return {n["metadata"]["name"]: n for n in items}

    # -- before anything changes ----------------------------------------------------------------------------

    def health(self) -> list[str]:
        """What stops an upgrade from starting: a node not Ready (or cordoned by someone else), an etcd member
        unhealthy or missing, a version the API reports that is not the one the host runs, a PodDisruptionBudget
        that allows no disruption now (a drain would wait on it)."""
        problems = []
        nodes = self.nodes()
        for h in self.c.workers:
            node = nodes.get(h.name)
            if node is None:
                problems.append(f"{h.name}: no Node registered")
                continue
            ready = next((x["status"] for x in node["status"]["conditions"] if x["type"] == "Ready"), "Unknown")
            if ready != "True":
                problems.append(f"{h.name}: Node not Ready ({ready})")
            ours = CORDONED in (node["metadata"].get("annotations") or {})
            if node["spec"].get("unschedulable") and not ours:
                problems.append(f"{h.name}: cordoned by someone else; uncordon it or leave it out of the inventory")
        first = self.c.etcd_hosts[0]
        every = ",".join(endpoint(h) for h in self.c.etcd_hosts)
        health = self.r.run(first, "upgrade: etcd health", etcdctl(every, "endpoint health"), check=False)
        if not health.ok:
            problems.append(f"etcd: not every member is healthy: {(health.stderr or health.stdout).strip()[-300:]}")
        members = self.r.run(first, "upgrade: etcd members", etcdctl(endpoint(first), "member list -w json"))
        count = len(json.loads(members.stdout).get("members", []))
        if count != len(self.c.etcd_hosts):
            problems.append(f"etcd: {count} members, the inventory has {len(self.c.etcd_hosts)}")
        problems += upgrade.disagreements(self.r.facts or {}, self.reported(nodes))
        pdbs = json.loads(self.kubectl("read the PodDisruptionBudgets", "get pdb -A -o json").stdout)["items"]
        for pdb in pdbs:
            status = pdb.get("status") or {}
            if status.get("expectedPods", 0) and status.get("disruptionsAllowed", 0) < 1:
                name = f"{pdb['metadata']['namespace']}/{pdb['metadata']['name']}"
                problems.append(
                    f"PodDisruptionBudget {name} allows no disruption now ({status.get('currentHealthy')} healthy, "
                    f"{status.get('desiredHealthy')} required): draining a node would wait on it"
                )
        return problems

    def reported(self, nodes: dict[str, dict]) -> dict[tuple[str, str], str]:
        """The versions the API reports: each apiserver's own /version (asked directly, not through the VIP) and
        each Node's kubelet."""
        out = {}
        for h in self.c.control_plane:
            server = f"https://{h.address}:{self.c.api.apiserver_port}"
            version = self.r.run(h, "upgrade: apiserver /version", kubectl("get --raw /version", server=server))
            out[h.name, "kube-apiserver"] = json.loads(version.stdout)["gitVersion"]
        for name, node in nodes.items():
            kubelet = (node["status"].get("nodeInfo") or {}).get("kubeletVersion")
            if kubelet:
                out[name, "kubelet"] = kubelet
        return out

    def warnings(self) -> list[str]:
        """What an upgrade goes on with, said first: workloads a drain stops."""
        items = json.loads(self.kubectl("read the workloads", "get deployments,statefulsets -A -o json").stdout)
        return upgrade.single_replicas(items["items"])

    # -- putting back what an interrupted run left out -------------------------------------------------------

    def restore_service(self, target: str) -> list[str]:
        """Every apiserver back in HAProxy rotation, and every node this tool cordoned whose kubelet runs
        `target` uncordoned; returns what it put back."""
        every = "; ".join(set_server(cp.name, "ready") for cp in self.c.control_plane)
        for lb in self.c.lb_hosts:
            self.r.run(lb, "upgrade: every apiserver back in rotation", every, check=False)
        back = []
        for name, node in self.nodes().items():
            ours = CORDONED in (node["metadata"].get("annotations") or {})
            if ours and node["status"]["nodeInfo"]["kubeletVersion"].removeprefix("v") == target:
                self.uncordon(name)
                back.append(name)
        return back

    def uncordon(self, name: str) -> None:
        self.kubectl(f"uncordon {name}", f"uncordon {name}")
        self.kubectl(f"unmark {name}", f"annotate node {name} {CORDONED}-")

    # -- the stages -----------------------------------------------------------------------------------------

    def limited(self, hosts: Sequence[Host]) -> Runner:
        """A runner for `hosts` alone over the main runner's connections, facts and owed restarts."""
        sub = Runner(self.c, self.r.inputs, self.r.remote, self.r.report, self.r.timeout, limit=hosts)
        sub.facts, sub.pending, sub.recorded = self.r.facts, self.r.pending, self.r.recorded
        return sub

    def run(self, stage: upgrade.Stage) -> None:
        start = time.monotonic()
        hosts = [self.c.host(n) for n in stage.hosts]
        phase, comps = COMPONENTS[stage.kind]
        sub = self.limited(hosts)
        try:
            if stage.kind == "apiserver":
                self.out_of_rotation(hosts[0])
                sub.phase(phase, comps)
                self.into_rotation(hosts[0])
            elif stage.kind == "nodes":
                self.leaders_renewing()
                for h in hosts:
                    self.drain(h)
                sub.phase(phase, comps)
                for h in hosts:
                    self.kubectl(
                        f"{h.name} Ready", f"wait --for=condition=Ready node/{h.name} --timeout=120s", timeout=130
                    )
                    self.uncordon(h.name)
            else:
                sub.phase(phase, comps)
        except (DeployFailed, StepFailed) as exc:
            raise UpgradeFailed(f"{stage.title}: {exc}") from None
        finally:
            sub.record_pending()
        self.done.append(Done(stage, time.monotonic() - start))

    def out_of_rotation(self, host: Host) -> None:
        """Drain `host`'s apiserver in every HAProxy: no new connection goes to it while it restarts."""
        for lb in self.c.lb_hosts:
            self.r.run(lb, f"upgrade: {host.name} out of rotation", set_server(host.name, "drain"))
        self.log(host.name, "apiserver out of HAProxy rotation")
        time.sleep(1)  # requests already on their way through it finish

    def into_rotation(self, host: Host) -> None:
        for lb in self.c.lb_hosts:
            self.r.run(lb, f"upgrade: {host.name} back in rotation", set_server(host.name, "ready"))
        self.log(host.name, "apiserver back in HAProxy rotation")

    def leaders_renewing(self, timeout: float = 90) -> None:
        """Wait until the controller-manager's and the scheduler's leases are renewed again after now: a restarted
        leader does not hand its lease over, and until another one takes it, no controller runs (a drained pod
        would stay in its Service's endpoints)."""
        names = ("kube-controller-manager", "kube-scheduler")

        def renewed() -> dict[str, str]:
            leases = json.loads(self.kubectl("read the leader leases", "-n kube-system get lease -o json").stdout)
            return {x["metadata"]["name"]: x["spec"].get("renewTime", "") for x in leases["items"]}

        first, deadline = renewed(), time.monotonic() + timeout
        while True:
            now = renewed()
            waiting = [n for n in names if n in first and now.get(n) == first[n]]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise UpgradeFailed(f"no {' or '.join(waiting)} renewed its leader lease within {timeout:.0f} s")
            time.sleep(1)

    def drain(self, host: Host) -> None:
        """Cordon (marked as ours) and drain (playbooks.draining); past the timeout, fail naming the pods still
        there."""
        self.kubectl(f"mark {host.name}", f"annotate --overwrite node {host.name} {CORDONED}=true")
        blocked = draining.drain(self.kubectl, host.name, self.drain_timeout)
        if blocked:
            raise UpgradeFailed(
                f"draining {host.name} did not finish in {self.drain_timeout} s (it stays cordoned; a re-run "
                f"continues):\n{blocked}"
            )
        self.log(host.name, "drained")
