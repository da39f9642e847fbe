"""`kubefab certs.renew --all` on the deployed lab under an API probe through the VIP (playbooks.lab.probe): every
leaf reissued and delivered, the services that read them restarted host by host (apiservers out of HAProxy
rotation, HAProxy reloaded), and no request through the VIP failed."""

from __future__ import annotations

import pytest
from labkit import FIGURES, TIMINGS, Kubectl, Lab, cli, ready_nodes

from kubefab.playbooks.lab.probe import api_probe
from kubefab.playbooks.model import Cluster

pytestmark = pytest.mark.lab
# A leaf of each kind on every host that has it, and the file HAProxy's health-check client reads.
FILES = (
    "/etc/kubernetes/pki/apiserver.crt",
    "/etc/etcd/pki/server.crt",
    "/etc/kubernetes/kubelet.conf",
    "/etc/haproxy/kubefab-healthcheck.pem",
)


def digests(lab: Lab, cluster: Cluster) -> dict[str, str]:
    out = {}
    for h in cluster.hosts:
        for line in lab.run(h.name, f"sudo sha256sum {' '.join(FILES)} 2>/dev/null || true").splitlines():
            digest, path = line.split()
            out[f"{h.name}:{path}"] = digest
    return out


def test_renew_all_reissues_every_leaf_with_no_failed_request_through_the_vip(
    lab: Lab, cluster: Cluster, kubectl: Kubectl
) -> None:
    inventory = str(lab.paths.inventory)
    result, _ = cli("certs.renew", "--inventory", inventory)
    assert result.returncode == 0 and "nothing to renew" in result.stdout, result.stdout[-2000:]
    before = digests(lab, cluster)
    with api_probe(cluster) as probe:
        result, seconds = cli("certs.renew", "--all", "--inventory", inventory)
    TIMINGS["certs.renew --all, 3 hosts"] = seconds
    FIGURES["certs.renew: API requests (failed/sent)"] = f"{len(probe.failures)}/{probe.sent}"
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    after = digests(lab, cluster)
    assert before.keys() == after.keys() and len(before) >= 3 * 3
    unchanged = [k for k in before if before[k] == after[k]]
    assert not unchanged, f"not renewed on the hosts: {unchanged}"
    checked, _ = cli("certs.check", "--hosts", "--json", "--inventory", inventory)
    assert checked.returncode == 0, checked.stdout[-3000:]  # the hosts hold the cluster directory's new ones
    assert ready_nodes(kubectl) == {h.name for h in cluster.workers}
    assert not probe.failures, f"{len(probe.failures)} of {probe.sent} requests failed: {probe.failures[:10]}"
    again, _ = cli("deploy", "--inventory", inventory)
    assert again.returncode == 0 and "0 change(s)" in again.stdout, again.stdout[-3000:]
