"""etcd backup and restore on the deployed lab: `kubefab etcd.backup` takes a checked snapshot into the cluster
directory, `etcd.restore --check` rehearses it on this machine (the cluster untouched), and after the objects are
deleted and every member's data wiped, `etcd.restore --yes` brings back every key and object and the pods."""

from __future__ import annotations

import json
import re
import stat
import time
import uuid
from pathlib import Path

import pytest
from labkit import TIMINGS, Etcd, Kubectl, Lab, cli, start_times

from kubefab.playbooks import dns
from kubefab.playbooks.components.etcd import DATA_DIR, etcdctl
from kubefab.playbooks.lab.bundle import lab_stack
from kubefab.playbooks.model import Cluster

pytestmark = pytest.mark.lab
KEYS = 300


def deployment(image: str) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: restore-me}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: restore-me}}}}
  template:
    metadata: {{labels: {{app: restore-me}}}}
    spec:
      containers: [{{name: pause, image: "{image}", imagePullPolicy: Never}}]
"""


def test_backup_rehearsal_and_restore_bring_back_keys_objects_and_pods(
    lab: Lab, cluster: Cluster, kubectl: Kubectl
) -> None:
    inventory = str(lab.paths.inventory)
    etcd = Etcd(cluster.dir / "pki", [f"https://{h.address}:2379" for h in cluster.etcd_hosts])
    prefix = f"/restore-{uuid.uuid4().hex[:8]}/"
    for i in range(KEYS):
        etcd.put(f"{prefix}{i}", str(i))
    kubectl("apply", "-f", "-", input=deployment(lab_stack().pause_image))
    kubectl("create", "secret", "generic", "restore-secret", "--from-literal=k=v")
    kubectl("rollout", "status", "deployment/restore-me", "--timeout=120s", timeout=130)

    result, seconds = cli("etcd.backup", "--keep", "2", "--inventory", inventory)
    TIMINGS["etcd.backup, 3 members"] = seconds
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    snapshot = Path(re.search(r"etcd snapshot (\S+): revision (\d+), (\d+) keys", result.stdout).group(1))
    assert snapshot.parent == cluster.dir / "backups" and stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    assert (snapshot.parent / f"{snapshot.name}.sha256").read_text().split()[1] == snapshot.name

    before = start_times(lab, cluster)
    result, seconds = cli("etcd.restore", str(snapshot), "--check", "--inventory", inventory)
    TIMINGS["etcd.restore --check (a rehearsal on this machine)"] = seconds
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    keys = int(re.search(r"restores to revision \d+ with (\d+) keys", result.stdout).group(1))
    assert keys >= KEYS, result.stdout
    assert start_times(lab, cluster) == before, "the rehearsal touched the cluster"

    refused, _ = cli("etcd.restore", str(snapshot), "--inventory", inventory)
    assert refused.returncode == 2 and "--yes" in refused.stderr

    # The disaster: the objects deleted, then every member's data gone.
    kubectl("delete", "deployment/restore-me", "secret/restore-secret", "--wait=false")
    for h in cluster.etcd_hosts:
        lab.run(h.name, f"sudo systemctl stop etcd && sudo rm -rf {DATA_DIR}")
    result, seconds = cli("etcd.restore", str(snapshot), "--yes", "--inventory", inventory)
    TIMINGS["etcd.restore --yes, 3 members"] = seconds
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]

    assert all(etcd.get(f"{prefix}{i}") == str(i) for i in range(KEYS)), "keys written before the backup are missing"
    kubectl("get", "secret", "restore-secret")
    deadline = time.monotonic() + 120
    while True:  # the pods come back: the Deployment's, Ready
        status = json.loads(kubectl("get", "deployment", "restore-me", "-o", "json").stdout)["status"]
        if status.get("readyReplicas") == 2:
            break
        assert time.monotonic() < deadline, f"restore-me not ready again: {status}"
        time.sleep(2)
    listed = lab.run(cluster.etcd_hosts[0].name, "sudo " + etcdctl("https://127.0.0.1:2379", "member list -w json"))
    members = json.loads(listed)
    assert len(members["members"]) == len(cluster.etcd_hosts)
    # Caches follow the restored cluster: a Service made now is seen by every CoreDNS replica (each informer
    # re-listed); asked one by one, as the Service's address would hide a replica left behind.
    kubectl("create", "service", "clusterip", "after-restore", "--tcp=80")
    name = f"after-restore.default.svc.{cluster.network.domain}"
    replicas = json.loads(kubectl("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "json").stdout)
    servers = {p["status"]["podIP"]: p["metadata"]["name"] for p in replicas["items"] if p["status"].get("podIP")}
    assert servers, "no CoreDNS replica has an address"
    connection = lab.connections[cluster.hosts[0].name]
    deadline = time.monotonic() + 60
    for server, pod in servers.items():
        while not (asked := connection.run(dns.query_command(name, server), hide=True, warn=True, in_stream=False)).ok:
            if time.monotonic() > deadline:
                logs = kubectl("-n", "kube-system", "logs", pod, "--tail=40", check=False)
                known = connection.run(
                    dns.query_command(f"kubernetes.default.svc.{cluster.network.domain}", server),
                    hide=True,
                    warn=True,
                    in_stream=False,
                )
                pytest.fail(
                    f"CoreDNS {server} ({pod}) does not answer {name} after the restore: {asked.stderr.strip()[-300:]}"
                    f"\nfor the kubernetes Service it answers {known.stdout.strip()} {known.stderr.strip()[-300:]}"
                    f"\nits log:\n{logs.stdout}{logs.stderr}"
                )
            time.sleep(2)
    kubectl("delete", "deployment/restore-me", "secret/restore-secret", "service/after-restore")
    result, _ = cli("deploy", "--inventory", inventory)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
