"""Membership on the lab: a worker host started beside a running cluster (`kubefab lab.add`) joins on the next
`kubefab deploy`; on the hosts already there the only change is the hosts block that names it, and nothing
restarts. Then a host that joins as etcd member (a learner first) and control plane; then the first host is
removed (`kubefab node.remove`). Runs after the reset module (conftest): the added hosts stay until `lab.down`."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import yaml
from labkit import FIGURES, TIMINGS, Etcd, Kubectl, Lab, cli, start_times

from kubefab.playbooks.components.control_plane import kubectl as kubectl_on_host
from kubefab.playbooks.components.etcd import JOIN_ENV, endpoint, etcdctl, member_rows
from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.access import connect
from kubefab.playbooks.lab.bundle import lab_stack
from kubefab.playbooks.lab.probe import api_probe
from kubefab.playbooks.model import Cluster

pytestmark = pytest.mark.lab
KEYS = 100  # etcd keys written before a member joins and read back from it


def pinned_pod(image: str, node: str) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: on-{node}}}
spec:
  nodeName: {node}
  containers: [{{name: pause, image: {image}}}]
"""


def test_an_added_worker_joins_and_the_others_only_learn_its_name(lab: Lab, cluster: Cluster, kubectl: Kubectl) -> None:
    inventory = str(lab.paths.inventory)
    before = start_times(lab, cluster)

    start = time.monotonic()
    lab.state = lifecycle.add(1, paths=lab.paths, log=lambda _: None)
    TIMINGS["lab.add, 1 host"] = time.monotonic() - start
    new = lab.state.hosts[-1]
    lab.connections[new.name] = connect(lab.paths, new)
    grown = load(lab.paths.inventory)
    assert [h.name for h in grown.hosts] == [*(h.name for h in cluster.hosts), new.name]
    assert grown.host(new.name).roles == ("worker",), grown.host(new.name).roles

    # What deploy would do: the new host gets everything, its own certificates are issued (and no other), the
    # hosts already there only learn its name.
    result, _ = cli("plan", "--json", "--inventory", inventory)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    changes = json.loads(result.stdout)["changes"]
    assert any(c["host"] == new.name for c in changes), changes
    local = [c["change"] for c in changes if c["host"] == "local"]
    own = (f"pki/hosts/{new.name}/", f"kubeconfig/kubelet-{new.name}.conf")
    assert local and all(c.startswith(own) for c in local), local
    elsewhere = [c for c in changes if c["host"] not in (new.name, "local")]
    assert elsewhere and all(c["change"].startswith("~ /etc/hosts (block") for c in elsewhere), elsewhere
    assert {c["host"] for c in elsewhere} == {h.name for h in cluster.hosts}

    result, seconds = cli("deploy", "--inventory", inventory)
    TIMINGS["deploy adding a worker to 3 hosts"] = seconds
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert start_times(lab, cluster) == before, "adding a worker restarted a service on a host already there"

    kubectl("wait", "--for=condition=Ready", f"node/{new.name}", "--timeout=120s", timeout=130)
    kubectl("-n", "kube-flannel", "rollout", "status", "ds/kube-flannel-ds", "--timeout=120s", timeout=130)
    ds = json.loads(kubectl("-n", "kube-flannel", "get", "ds", "kube-flannel-ds", "-o", "json").stdout)["status"]
    assert ds["numberReady"] == ds["desiredNumberScheduled"] == len(grown.workers)
    kubectl("apply", "-f", "-", input=pinned_pod(lab_stack().pause_image, new.name))
    kubectl("wait", "--for=condition=Ready", f"pod/on-{new.name}", "--timeout=120s", timeout=130)
    kubectl("delete", f"pod/on-{new.name}", "--wait=false")

    again, _ = cli("deploy", "--inventory", inventory)
    assert again.returncode == 0 and "0 change(s)" in again.stdout, again.stdout[-3000:]


def members(lab: Lab, on: str, endpoints: str) -> list[list[str]]:
    """`etcdctl member list` read on `on`, as rows (components.etcd.member_rows)."""
    return member_rows(lab.run(on, f"sudo {etcdctl(endpoints, 'member list')}"))


def timeline(lab: Lab, c: Cluster) -> str:
    """When each apiserver stopped, started and was ready, and what HAProxy did: to place a failed request."""
    out = []
    for h in c.control_plane:
        out.append(f"-- {h.name} kube-apiserver")
        out.append(
            lab.run(
                h.name,
                "sudo journalctl -u kube-apiserver -o short-precise --no-pager -n 400 | "
                "grep -E 'Started|Stopping|Stopped|shutdown|ready' | tail -n 12 || true",
            )
        )
    for lb in c.lb_hosts:
        for unit in ("haproxy", "keepalived"):
            out.append(f"-- {lb.name} {unit}")
            out.append(
                lab.run(lb.name, f"sudo journalctl -u {unit} -o short-precise --no-pager -n 60 | tail -n 25 || true")
            )
    return "\n".join(out)


def test_an_added_etcd_and_control_plane_member_joins_as_a_learner_with_the_api_up(
    lab: Lab, cluster: Cluster, kubectl: Kubectl
) -> None:
    """The issue's second step: a host added as etcd member, apiserver, worker and lb host (4 members: the step
    of a replacement, so etcd.allow_even_members). It joins as a learner and is promoted; the members already
    there restart nothing in etcd; its HAProxy serves the API and its keepalived joins as a backup, the VIP
    staying where it was; the API through the VIP is probed throughout; keys written before are all read back
    from the new member."""
    inventory = lab.paths.inventory
    etcd = Etcd(cluster.dir / "pki", [endpoint(h) for h in cluster.etcd_hosts])
    keys = {f"/kubefab-membership/{i:03}": uuid.uuid4().hex for i in range(KEYS)}
    for key, value in keys.items():
        etcd.put(key, value)
    etcd_started = {h.name: lab.run(h.name, "systemctl show -p ActiveEnterTimestamp etcd") for h in cluster.etcd_hosts}

    lab.state = lifecycle.add(1, paths=lab.paths, log=lambda _: None)
    new = lab.state.hosts[-1]
    lab.connections[new.name] = connect(lab.paths, new)
    data = yaml.safe_load(inventory.read_text())
    next(h for h in data["hosts"] if h["name"] == new.name)["roles"] = ["etcd", "control_plane", "worker", "lb"]
    data.setdefault("etcd", {})["allow_even_members"] = True
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    grown = load(inventory)

    result, _ = cli("plan", "--json", "--inventory", str(inventory))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    joins = [f["detail"] for f in report["preflight"] if f["host"] == new.name and f["check"] == "etcd data"]
    assert joins and "as a learner" in joins[0], report["preflight"]
    assert any(c["host"] == new.name and "joined the running etcd cluster" in c["change"] for c in report["changes"])

    with api_probe(grown) as api:
        result, seconds = cli("deploy", "--inventory", str(inventory))
    TIMINGS["deploy adding an etcd + control-plane + lb host"] = seconds
    FIGURES["API requests failed through the VIP while an etcd + control-plane + lb host joined"] = (
        f"{len(api.failures)} of {api.sent}"
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert api.sent > 20
    if api.failures:
        print(timeline(lab, grown))  # shown with the failure: where each failed request landed in time
    assert not api.failures, api.failures[:10]

    every = ",".join(endpoint(h) for h in grown.etcd_hosts)
    listed = members(lab, cluster.etcd_hosts[0].name, every)
    assert sorted(m[2] for m in listed) == sorted(h.name for h in grown.etcd_hosts), listed
    assert all(m[1] == "started" and m[5] == "false" for m in listed), listed  # every one a started voter
    assert lab.run(new.name, f"sudo test -e {JOIN_ENV} && echo left || echo gone") == "gone"
    # The members already there were not restarted: the initial cluster is read only at a member's first start.
    assert {
        h.name: lab.run(h.name, "systemctl show -p ActiveEnterTimestamp etcd") for h in cluster.etcd_hosts
    } == etcd_started
    joined = grown.host(new.name)
    assert etcd.prefix("/kubefab-membership/", endpoint(joined)) == keys  # read from the new member
    for lb in grown.lb_hosts:
        assert f"server {new.name} " in lab.run(lb.name, "sudo cat /etc/haproxy/haproxy.cfg")
    # The new lb host: HAProxy and keepalived running, the API answering through its HAProxy, the VIP unmoved.
    assert lab.run(new.name, "systemctl is-active haproxy keepalived").split() == ["active", "active"]
    through = f"https://{joined.address}:{grown.api.port}"
    assert kubectl("--server", through, "get", "--raw", "/readyz").stdout.strip() == "ok"
    holders = [h.name for h in grown.lb_hosts if f" {grown.api.vip}/" in lab.run(h.name, "ip -o -4 addr show")]
    assert holders == [cluster.lb_hosts[0].name], holders
    lab.run(new.name, f"sudo {kubectl_on_host(server=f'https://{joined.address}:{grown.api.apiserver_port}')}")
    kubectl("wait", "--for=condition=Ready", f"node/{new.name}", "--timeout=120s", timeout=130)

    again, _ = cli("deploy", "--inventory", str(inventory))
    assert again.returncode == 0 and "0 change(s)" in again.stdout, again.stdout[-3000:]
    # The host suite an operator runs: etcd's member list is the inventory's, with no learner left.
    verified, _ = cli("verify", "--inventory", str(inventory))
    assert verified.returncode == 0, verified.stdout[-4000:] + verified.stderr[-2000:]


def test_the_original_first_host_is_removed_with_the_api_up(lab: Lab, cluster: Cluster, kubectl: Kubectl) -> None:
    """The issue's third step: lab-1, the first host (etcd member, control plane, worker, and the lb host that
    is the VIP's MASTER), removed with `kubefab node.remove` while the API through the VIP is probed. etcd keys
    written before are all there after; etcd's member list is the inventory's; lab-1 is clean; the next deploy
    of the inventory (now without it) changes nothing."""
    inventory = lab.paths.inventory
    before = load(inventory)
    gone = before.hosts[0]
    assert gone.roles == ("etcd", "control_plane", "worker", "lb") and gone in before.lb_hosts
    rest = [h for h in before.etcd_hosts if h != gone]
    etcd = Etcd(cluster.dir / "pki", [endpoint(h) for h in rest])
    keys = {f"/kubefab-removal/{i:03}": uuid.uuid4().hex for i in range(KEYS)}
    for key, value in keys.items():
        etcd.put(key, value)

    text = inventory.read_text()
    listed, _ = cli("node.remove", gone.name, "--inventory", str(inventory))
    assert listed.returncode == 2 and "give --yes" in listed.stderr, listed.stdout[-2000:] + listed.stderr[-2000:]
    assert inventory.read_text() == text

    with api_probe(before) as api:
        result, seconds = cli("node.remove", gone.name, "--inventory", str(inventory), "--yes", timeout=900)
    TIMINGS["node.remove of the first host (etcd, control plane, lb)"] = seconds
    FIGURES["API requests failed through the VIP while the first host was removed"] = (
        f"{len(api.failures)} of {api.sent}"
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert api.sent > 20
    if api.failures:
        print(result.stdout[-4000:], timeline(lab, before), sep="\n")  # kubefab's steps, then the journals
    assert not api.failures, api.failures[:10]

    after = load(inventory)
    assert [h.name for h in after.hosts] == [h.name for h in before.hosts if h != gone]
    every = ",".join(endpoint(h) for h in after.etcd_hosts)
    listed_members = members(lab, after.etcd_hosts[0].name, every)
    assert sorted(m[2] for m in listed_members) == sorted(h.name for h in after.etcd_hosts), listed_members
    assert all(m[1] == "started" and m[5] == "false" for m in listed_members), listed_members
    for h in after.etcd_hosts:
        assert etcd.prefix("/kubefab-removal/", endpoint(h)) == keys, h.name
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(h.name for h in after.workers)
    for lb in after.lb_hosts:
        assert f"server {gone.name} " not in lab.run(lb.name, "sudo cat /etc/haproxy/haproxy.cfg")
    holders = [h.name for h in after.lb_hosts if f" {after.api.vip}/" in lab.run(h.name, "ip -o -4 addr show")]
    assert len(holders) == 1, holders
    # The host is clean: no kubefab service runs, its files, binaries and etcd data are gone.
    left = lab.run(
        gone.name,
        "for u in etcd kube-apiserver kubelet haproxy keepalived containerd; do systemctl is-active -q $u && echo $u; "
        "done; for p in /var/lib/etcd /etc/kubernetes /etc/etcd /usr/local/bin/kubelet; do "
        "sudo test -e $p && echo $p; done; true",
    )
    assert left == "", left
    # Its own credentials are no longer in the cluster directory's PKI, but kept under retired/.
    assert not (after.dir / "pki" / "hosts" / gone.name).exists()
    assert not (after.dir / "kubeconfig" / f"kubelet-{gone.name}.conf").exists()
    assert list((after.dir / "pki" / "retired" / "hosts").glob(f"{gone.name}-*/{gone.name}/etcd-server.crt"))

    again, _ = cli("deploy", "--inventory", str(inventory))
    assert again.returncode == 0 and "0 change(s)" in again.stdout, again.stdout[-3000:]
    verified, _ = cli("verify", "--inventory", str(inventory))
    assert verified.returncode == 0, verified.stdout[-4000:] + verified.stderr[-2000:]
