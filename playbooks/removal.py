"""`kubefab node.remove NAME`: a host taken out of a running cluster in the order that keeps it serving, then
cleaned, then dropped from the inventory, whose next deploy tells the others (HAProxy backends, etcd and
apiserver peer lists, /etc/hosts). The pure parts decide: what refuses a removal (`refusals`, `quorum_refusal`)
and the inventory's text without the host (`inventory_without`). `Remover` carries the steps out through a
runner; each step checks first, so an interrupted removal is finished by running it again."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubefab.playbooks import draining
from kubefab.playbooks import reset as resets
from kubefab.playbooks.apply import Assessment, execute
from kubefab.playbooks.components.control_plane import kubectl
from kubefab.playbooks.components.etcd import endpoint, etcdctl, member_rows, peer_url
from kubefab.playbooks.components.load_balancer import lb_hosts, set_server, vip_release
from kubefab.playbooks.inventory import validate_text
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Plan
from kubefab.playbooks.remote import StepFailed
from kubefab.playbooks.runner import Runner

CONTROL_PLANE_SERVICES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


class RemovalError(Exception):
    pass


# -- deciding -------------------------------------------------------------------------------------------------


def _dash_line(lines: list[str], node: yaml.Node) -> int:
    """The line of the `-` that opens a block sequence item (the item's own first line, or one above it)."""
    line = node.start_mark.line
    if "-" in lines[line][: node.start_mark.column]:
        return line
    while line > 0 and not lines[line - 1].lstrip().startswith("-"):
        line -= 1
    return line - 1


def _last_line(node: yaml.Node) -> int:
    """The last line holding any of `node`'s text (a block collection's end mark is the next token's start)."""
    if isinstance(node, yaml.ScalarNode) or node.flow_style:
        end = node.end_mark
        return end.line if end.column > 0 or end.line == node.start_mark.line else end.line - 1
    children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
    return max((_last_line(n) for n in children), default=node.start_mark.line)


def inventory_without(text: str, name: str) -> str:
    """`text` (an inventory) with host `name`'s entry taken out and every other line (comments too) as it was;
    checked by loading both: the result is the same settings without that host, or RemovalError."""
    root = yaml.compose(text)
    hosts = next((v for k, v in (root.value if isinstance(root, yaml.MappingNode) else []) if k.value == "hosts"), None)
    if not isinstance(hosts, yaml.SequenceNode):
        raise RemovalError("the inventory has no hosts list")
    if hosts.flow_style:
        raise RemovalError("hosts is written as a flow list [...]: take the host out of it yourself")
    lines = text.splitlines(keepends=True)
    for item in hosts.value:
        named = item.value if isinstance(item, yaml.MappingNode) else []
        if any(k.value == "name" and getattr(v, "value", None) == name for k, v in named):
            start, end = _dash_line(lines, item), _last_line(item) + 1
            edited = "".join(lines[:start] + lines[end:])
            break
    else:
        raise RemovalError(f"no host named {name} in the inventory")
    before = yaml.safe_load(text)
    before["hosts"] = [h for h in before["hosts"] if h.get("name") != name]
    if yaml.safe_load(edited) != before:
        raise RemovalError(f"could not take {name} out of the inventory's text cleanly: remove its entry yourself")
    return edited


def refusals(cluster: Cluster, name: str, edited: str) -> list[str]:
    """Why removing `name` is refused before any host is touched: it would leave no etcd member, no control
    plane or no holder for the VIP, or the inventory without it would not be valid (an even etcd count, ...)."""
    host = cluster.host(name)
    out = []
    if host.has("etcd") and len(cluster.etcd_hosts) == 1:
        out.append(f"{name} is the only etcd member: removing it would lose the cluster's data")
    if host.has("control_plane") and len(cluster.control_plane) == 1:
        out.append(f"{name} is the only control-plane host: the cluster would have no API")
    if host in lb_hosts(cluster) and len(cluster.lb_hosts) == 1:
        out.append(f"{name} is the only lb host: nothing would hold the VIP {cluster.api.vip}")
    if not out:
        verdict = validate_text(edited, Path(cluster.source))
        out += [
            f"the inventory without {name}: {p.field}: {p.found}; expected {p.expected}"
            for p in verdict.problems
            if p.severity == "error"
        ]
    return out


def quorum_refusal(members: int, healthy: int) -> str | None:
    """Whether the etcd members left once one is removed (`members` of them, `healthy` answering) keep a quorum."""
    quorum = members // 2 + 1
    if healthy < quorum:
        return (
            f"only {healthy} of the {members} etcd members left would be healthy, and {quorum} make a quorum: "
            "bring the others back first (removing this member now would stop the cluster)"
        )
    return None


# -- carrying it out ------------------------------------------------------------------------------------------


@dataclass
class Remover:
    """The steps of removing `gone` from the cluster `r` runs (the inventory that still names it)."""

    r: Runner
    gone: Host
    log: Callable[[str, str], None]
    drain_timeout: int = 300
    reachable: bool = True

    @property
    def c(self) -> Cluster:
        return self.r.cluster

    def others(self, hosts: tuple[Host, ...]) -> tuple[Host, ...]:
        return tuple(h for h in hosts if h != self.gone)

    def kubectl(self, step: str, args: str, check: bool = True, timeout: int | None = None):
        api = self.others(self.c.control_plane)[0]
        return self.r.run(api, f"node.remove: {step}", kubectl(args), check=check, timeout=timeout)

    def on_gone(self, step: str, command: str, check: bool = True):
        return self.r.run(self.gone, f"node.remove: {step}", command, check=check)

    def reach(self) -> bool:
        try:
            self.r.run(self.gone, "node.remove: reach the host", "true", timeout=20)
        except StepFailed as exc:
            self.log(self.gone.name, f"unreachable ({exc.stderr.strip()}): its own cleanup is skipped")
            self.reachable = False
        return self.reachable

    # -- what is checked on the hosts before anything changes --------------------------------------------------

    def etcd_health(self) -> dict[str, bool]:
        """Each remaining etcd member's endpoint -> whether it answers."""
        rest = self.others(self.c.etcd_hosts)
        every = ",".join(endpoint(h) for h in rest)
        out = self.r.run(rest[0], "node.remove: etcd health", etcdctl(every, "endpoint health -w json"), check=False)
        try:
            rows = json.loads(out.stdout or "[]")
        except json.JSONDecodeError:
            rows = []
        found = {row.get("endpoint"): bool(row.get("health")) for row in rows}
        return {endpoint(h): found.get(endpoint(h), False) for h in rest}

    def live_refusals(self) -> list[str]:
        if not self.gone.has("etcd"):
            return []
        health = self.etcd_health()
        refused = quorum_refusal(len(health), sum(health.values()))
        return [refused] if refused else []

    # -- the steps --------------------------------------------------------------------------------------------

    def node(self) -> dict[str, Any] | None:
        out = self.kubectl("read the Node", f"get node {self.gone.name} -o json --ignore-not-found")
        return json.loads(out.stdout) if out.stdout.strip() else None

    def drain(self) -> None:
        """Its pods moved elsewhere first, while every service still runs (a PodDisruptionBudget is respected)."""
        if self.node() is None:
            return
        if not self.reachable:  # a kubelet that cannot confirm evictions would keep the drain waiting
            self.log(self.gone.name, "not drained (unreachable): its pods are replaced once the Node is deleted")
            return
        blocked = draining.drain(self.kubectl, self.gone.name, self.drain_timeout)
        if blocked:
            raise RemovalError(
                f"draining {self.gone.name} did not finish in {self.drain_timeout} s (it stays cordoned; "
                f"nothing else was changed):\n{blocked}"
            )
        self.log(self.gone.name, "drained: its pods run elsewhere")

    def vip_moved(self) -> None:
        """An lb host gives the VIP up before its HAProxy stops: new connections held back for a moment while
        the requests under way finish, then keepalived stopped, whose priority-0 advertisement makes another lb
        host take the VIP at once instead of after the master-down timer."""
        if self.gone not in lb_hosts(self.c):
            return
        if self.reachable:
            self.on_gone("keepalived stopped (the VIP moves)", vip_release(self.c))
        vip = f" {self.c.api.vip}/"
        deadline = time.monotonic() + 30
        while True:
            holders = [
                h.name
                for h in self.others(self.c.lb_hosts)
                if vip in self.r.run(h, "node.remove: who holds the VIP", "ip -o -4 addr show").stdout
            ]
            if holders:
                self.log(self.gone.name, f"VIP {self.c.api.vip} now on {holders[0]}")
                return
            if time.monotonic() > deadline:
                raise RemovalError(f"no other lb host took the VIP {self.c.api.vip} within 30 s")
            time.sleep(0.5)

    def apiserver_out(self) -> None:
        """Its apiserver drained in every other HAProxy (no new connection to it), then the control plane stopped
        on it: the controller-manager's and scheduler's leases pass to another host."""
        if not self.gone.has("control_plane"):
            return
        for lb in self.others(lb_hosts(self.c)):
            self.r.run(lb, f"node.remove: {self.gone.name} out of HAProxy", set_server(self.gone.name, "drain"))
        time.sleep(1)  # requests already on their way through it finish
        if self.reachable:
            self.on_gone("control plane stopped", f"systemctl disable --now -q {' '.join(CONTROL_PLANE_SERVICES)}")
        self.log(self.gone.name, "apiserver out of HAProxy; control plane stopped")

    def member_removed(self) -> None:
        """Leadership moved away if it holds it, then `member remove` through the other members (quorum counted
        without it from then on), then its etcd stopped."""
        if not self.gone.has("etcd"):
            return
        rest = self.others(self.c.etcd_hosts)
        every = ",".join(endpoint(h) for h in rest)
        out = self.r.run(rest[0], "node.remove: etcd members", etcdctl(every, "member list -w json"))
        listed = json.loads(out.stdout)
        mine = [m for m in listed.get("members", []) if peer_url(self.gone) in m.get("peerURLs", [])]
        if mine:
            member = format(mine[0]["ID"], "x")
            if self.reachable and self.leader(rest) == mine[0]["ID"]:
                target = next(m for m in listed["members"] if m["ID"] != mine[0]["ID"] and not m.get("isLearner"))
                self.on_gone(
                    "etcd leadership moved", etcdctl(endpoint(self.gone), f"move-leader {format(target['ID'], 'x')}")
                )
                self.log(self.gone.name, f"etcd leadership moved to {target.get('name')}")
            self.r.run(rest[0], "node.remove: etcd member remove", etcdctl(every, f"member remove {member}"))
            self.log(self.gone.name, f"etcd member {member} removed")
        if self.reachable:
            self.on_gone("etcd stopped", "systemctl disable --now -q etcd || true")
        # Checked through every member left: none still lists it.
        for h in rest:
            rows = member_rows(self.r.run(h, "node.remove: etcd members", etcdctl(endpoint(h), "member list")).stdout)
            if any(row[2] == self.gone.name or peer_url(self.gone) in row[3] for row in rows):
                raise RemovalError(f"{h.name}'s etcd still lists {self.gone.name} as a member")

    def leader(self, rest: tuple[Host, ...]) -> int | None:
        every = ",".join(endpoint(h) for h in (*rest, self.gone))
        out = self.r.run(rest[0], "node.remove: etcd leader", etcdctl(every, "endpoint status -w json"), check=False)
        try:
            statuses = json.loads(out.stdout or "[]")
        except json.JSONDecodeError:
            return None
        return next((s["Status"]["leader"] for s in statuses if "Status" in s), None)

    def cleaned(self) -> list[str]:
        """kubefab's services, files, binaries, network state and etcd's (now useless) data off the host, as
        `kubefab reset --delete-data` does: a member removed cannot rejoin from its old data."""
        if not self.reachable:
            return []
        found = Assessment(steps=list(resets.steps(self.r.inputs, self.gone, delete_data=True)))
        changed = execute(self.r.remote(self.gone), Plan(self.gone.name, "node.remove"), found, self.r.bundle).changed
        self.log(self.gone.name, f"cleaned: {len(changed)} reset step(s)")
        return changed

    def node_deleted(self) -> None:
        """Deleted once its kubelet is stopped (a running kubelet would register it again)."""
        self.kubectl("delete the Node", f"delete node {self.gone.name} --ignore-not-found --wait=true", timeout=90)
        self.log(self.gone.name, "Node deleted")

    def steps(self) -> list[tuple[str, Callable[[], object]]]:
        return [
            ("drain", self.drain),
            ("VIP", self.vip_moved),
            ("apiserver", self.apiserver_out),
            ("etcd", self.member_removed),
            ("clean", self.cleaned),
            ("Node", self.node_deleted),
        ]
