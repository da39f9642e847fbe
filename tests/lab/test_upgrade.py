"""`kubefab upgrade` on fresh lab hosts: deploy the previous minor (playbooks.lab.bundle.upgrade_from_stack),
run an application with 3 replicas and a PodDisruptionBudget, then upgrade to the lab's default minor while two
probes run: the API through the VIP (/readyz and a LIST every 200 ms, a new TLS connection each) and the
application's Service from a lab host (every 200 ms). The first upgrade is killed after the first control-plane
host and re-run to the end. Afterwards every component runs the new version, etcd's keys written before are all
there, the application kept its replicas, and the probes' failures are counted (the target is none)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import labapp
import pytest
from labkit import FIGURES, TIMINGS, Etcd, Kubectl, Lab, cli, start_times
from test_kubernetes_pods import app_archive  # noqa: F401  (the module's fixture)

from kubefab.playbooks import source
from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab.bundle import (
    ensure_bundle,
    lab_stack,
    upgrade_from_minor,
    upgrade_from_overrides,
    upgrade_from_stack,
)
from kubefab.playbooks.lab.inventory import set_versions
from kubefab.playbooks.lab.probe import api_probe
from kubefab.playbooks.model import Cluster

pytestmark = pytest.mark.lab
KEYS = 200  # etcd keys written before the upgrade and read after it


@pytest.fixture(scope="module")
def old(lab: Lab) -> Iterator[Cluster]:
    """Fresh lab hosts (the session's are replaced) deployed with the previous minor."""
    lab.replace_hosts()
    ensure_bundle(lab.paths.bundle, source.cache_dir(), upgrade_from_stack())
    set_versions(lab.paths.inventory, upgrade_from_minor(), upgrade_from_overrides())
    result, seconds = cli("deploy", "--inventory", str(lab.paths.inventory))
    TIMINGS[f"deploy {upgrade_from_stack().kubernetes}, 3 hosts"] = seconds
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    yield load(lab.paths.inventory)


def kubectl_for(cluster: Cluster, lab: Lab) -> Kubectl:
    """The target release's kubectl (the lab bundle's) with the admin kubeconfig, through the VIP."""
    binary = lab.paths.root / "kubectl-upgrade" / "kubectl"
    if not binary.exists():
        binary.parent.mkdir(exist_ok=True)
        subprocess.run(
            [
                "tar",
                "-xzf",
                str(next(lab.paths.bundle.glob(f"kubernetes_server/{lab_stack().kubernetes}/*/*.tar.gz"))),
                "-C",
                str(binary.parent),
                "--strip-components=3",
                "kubernetes/server/bin/kubectl",
            ],
            check=True,
        )

    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 120):
        argv = [str(binary), "--kubeconfig", str(cluster.dir / "kubeconfig" / "admin.conf"), *args]
        done = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout, check=False)
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done

    return run


def test_deploy_of_another_version_is_refused_and_plan_shows_the_upgrade(lab: Lab, old: Cluster) -> None:
    set_versions(lab.paths.inventory, lab_stack().minor)
    before = start_times(lab, old)
    result, _ = cli("deploy", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"kubefab upgrade --inventory {lab.paths.inventory}" in result.stderr, result.stderr[-2000:]
    result, _ = cli("upgrade", "--plan", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    old_version, new_version = upgrade_from_stack().kubernetes, lab_stack().kubernetes
    for h in old.hosts:
        for service in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"):
            assert any(
                h.name in line and service in line and old_version in line and new_version in line
                for line in result.stdout.splitlines()
            ), f"{h.name} {service} not in the plan:\n{result.stdout[-3000:]}"
    stages = 2 * len(old.control_plane) + len(old.workers)  # apiserver, controllers per host; nodes one by one
    assert f"{stages} stage(s) would run" in result.stdout, result.stdout[-3000:]
    assert start_times(lab, old) == before, "upgrade --plan changed something"


def test_upgrade_interrupted_and_rerun_keeps_the_api_and_the_application_up(
    lab: Lab,
    old: Cluster,
    app_archive: Path,  # noqa: F811
) -> None:
    kubectl = kubectl_for(old, lab)
    labapp.import_archive(lab.connections, [h.name for h in old.workers], app_archive)
    kubectl("apply", "-f", "-", input=labapp.drainable_manifest("up"))
    kubectl("rollout", "status", "deployment/up", "--timeout=180s", timeout=200)
    service_ip = kubectl("get", "service", "up", "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    etcd = Etcd(old.dir / "pki", [f"https://{h.address}:2379" for h in old.etcd_hosts])
    prefix = f"/upgrade-{uuid.uuid4().hex[:8]}/"
    for i in range(KEYS):
        etcd.put(f"{prefix}{i}", str(i))
    kubectl("create", "secret", "generic", "before-upgrade", "--from-literal=k=v")

    started = time.monotonic()
    with labapp.ServiceProbe(lab.connections[old.hosts[0].name], service_ip) as app, api_probe(old) as api:
        first = subprocess.Popen(
            [sys.executable, "-m", "kubefab.playbooks.cli", "upgrade", "--inventory", str(lab.paths.inventory)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        seen = []
        assert first.stdout is not None
        for line in first.stdout:
            seen.append(line)
            if line.startswith("== 2/"):  # the first control-plane host is done
                first.send_signal(signal.SIGKILL)
                break
        first.wait(30)
        killed_after = time.monotonic() - started
        assert first.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
        result, seconds = cli("upgrade", "--inventory", str(lab.paths.inventory))
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    codes, app_failed = app.lines, app.failed
    TIMINGS["upgrade, killed after the first control-plane host"] = killed_after
    TIMINGS["upgrade re-run to the end"] = seconds
    FIGURES["upgrade: API requests (failed/sent)"] = f"{len(api.failures)}/{api.sent}"
    FIGURES["upgrade: application requests (failed/sent)"] = f"{len(app_failed)}/{len(codes)}"
    print("".join(seen), result.stdout[-6000:])
    print("API failures:", api.failures[:20], "application failures:", app_failed[:20])
    assert "upgrade finished" in result.stdout

    version = lab_stack().kubernetes
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {f"v{version}"}
    assert not any(n["spec"].get("unschedulable") for n in nodes), "a node was left cordoned"
    for h in old.control_plane:
        served = kubectl("--server", f"https://{h.address}:{old.api.apiserver_port}", "version", "-o", "json")
        assert json.loads(served.stdout)["serverVersion"]["gitVersion"] == f"v{version}", h.name
    for h in old.hosts:  # what each process runs, from its own executable
        script = (
            "for s in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do "
            "sudo /proc/$(systemctl show -p MainPID --value $s)/exe --version; done"
        )
        assert set(lab.run(h.name, script).splitlines()) == {f"Kubernetes v{version}"}, h.name
    assert all(etcd.get(f"{prefix}{i}") == str(i) for i in range(KEYS)), "etcd keys written before are missing"
    kubectl("get", "secret", "before-upgrade")
    deployment = json.loads(kubectl("get", "deployment", "up", "-o", "json").stdout)
    assert deployment["status"].get("availableReplicas") == 3
    assert codes and not app_failed, f"{len(app_failed)} of {len(codes)} application requests failed: {app_failed[:10]}"
    assert not api.failures, f"{len(api.failures)} API requests through the VIP failed: {api.failures[:10]}"


def test_a_second_upgrade_changes_nothing(lab: Lab, old: Cluster) -> None:
    before = start_times(lab, old)
    result, seconds = cli("upgrade", "--inventory", str(lab.paths.inventory))
    TIMINGS["upgrade, nothing left to upgrade"] = seconds
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "nothing to upgrade" in result.stdout
    assert start_times(lab, old) == before
    result, _ = cli("deploy", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0 and "0 change(s)" in result.stdout, result.stdout[-3000:]


def test_a_downgrade_is_refused_on_the_running_cluster(lab: Lab, old: Cluster) -> None:
    """The skew policy against real hosts: back to the previous minor (whose files the bundle holds) is refused
    before anything changes. (A jump over a minor needs a third release on the hosts; tests/unit/test_upgrade_policy.py
    shows that refusal and its two commands.)"""
    before = start_times(lab, old)
    set_versions(lab.paths.inventory, upgrade_from_minor())
    try:
        result, _ = cli("upgrade", "--inventory", str(lab.paths.inventory))
        assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
        assert "upgrade refused; nothing was changed" in result.stderr and "minor downgrade" in result.stderr
        assert start_times(lab, old) == before
    finally:
        set_versions(lab.paths.inventory, lab_stack().minor)
