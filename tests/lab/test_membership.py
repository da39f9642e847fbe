"""Membership on the lab: a worker host started beside a running cluster (`kubefab lab.add`) joins on the next
`kubefab deploy`; on the hosts already there the only change is the hosts block that names it, and nothing
restarts. Runs after the reset module (conftest): the added host stays until `lab.down`."""

from __future__ import annotations

import json
import time

import pytest
from labkit import TIMINGS, Kubectl, Lab, cli, start_times

from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.access import connect
from kubefab.playbooks.lab.bundle import lab_stack
from kubefab.playbooks.model import Cluster

pytestmark = pytest.mark.lab


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
    ds = json.loads(kubectl("-n", "kube-flannel", "get", "ds", "kube-flannel-ds", "-o", "json").stdout)["status"]
    assert ds["numberReady"] == ds["desiredNumberScheduled"] == len(grown.workers)
    kubectl("apply", "-f", "-", input=pinned_pod(lab_stack().pause_image, new.name))
    kubectl("wait", "--for=condition=Ready", f"pod/on-{new.name}", "--timeout=120s", timeout=130)
    kubectl("delete", f"pod/on-{new.name}", "--wait=false")

    again, _ = cli("deploy", "--inventory", inventory)
    assert again.returncode == 0 and "0 change(s)" in again.stdout, again.stdout[-3000:]
