"""Faults during and around a deploy on the lab: an etcd member down, a host cut off mid-deploy, and a
rolling restart of every etcd member with data in the cluster and writes going on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from labkit import TIMINGS, Etcd, Lab, cli, set_link

from kubefab.playbooks.inventory import load
from kubefab.playbooks.model import Cluster

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Cluster:
    """The lab deployed (a no-op when test_deploy already did it in this session)."""
    result, _ = cli("deploy", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return load(lab.paths.inventory)


def client(cluster: Cluster) -> Etcd:
    return Etcd(cluster.dir / "pki", [f"https://{h.address}:2379" for h in cluster.etcd_hosts])


def test_stopped_etcd_member_leaves_the_cluster_healthy_and_writable(lab: Lab, cluster: Cluster) -> None:
    stopped = cluster.etcd_hosts[2].name
    etcd = client(cluster)
    lab.run(stopped, "sudo systemctl stop etcd")
    try:
        for endpoint in etcd.endpoints[:2]:
            etcd.put(f"/kubefab-test/while-{stopped}-down", endpoint, endpoint)
            assert etcd.get(f"/kubefab-test/while-{stopped}-down", etcd.endpoints[1]) == endpoint
        with pytest.raises(OSError):
            etcd.get("/kubefab-test/while-down", etcd.endpoints[2])
    finally:
        # A re-run of deploy starts the member again: the cluster converges without manual steps.
        result, _ = cli("deploy", "--inventory", str(lab.paths.inventory), "--only", "etcd")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "started etcd" in result.stdout
    assert etcd.get(f"/kubefab-test/while-{stopped}-down", etcd.endpoints[2]) == etcd.endpoints[1]


def test_unreachable_host_at_start_fails_preflight_and_changes_nothing(lab: Lab, cluster: Cluster) -> None:
    victim = cluster.hosts[2].name
    set_link(lab, victim, up=False)
    try:
        result, _ = cli("deploy", "--inventory", str(lab.paths.inventory), "--command-timeout", "15")
    finally:
        set_link(lab, victim, up=True)
    assert result.returncode != 0
    assert f"{victim}: gather facts failed" in result.stderr and "cannot reach the host" in result.stderr, (
        result.stderr[-2000:]
    )
    assert "== prepare" not in result.stdout


PHASE_ORDER = ["prepare", "certificates", "etcd", "lb", "control-plane", "nodes", "addons"]


def test_unreachable_host_mid_deploy_stops_the_phase_and_a_rerun_completes(lab: Lab, cluster: Cluster) -> None:
    """Cut once the deploy is under way (preflight passed, connections open): the running phase fails on that
    host naming its step and command, nothing later runs, and a re-run after the link is back completes."""
    victim = cluster.hosts[2].name
    # Work for a later phase, to show it does not run after the failure and does run on the re-run.
    lab.run(cluster.hosts[0].name, "sudo sed -i 's/--v=2/--v=3/' /etc/kubernetes/scheduler")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubefab.playbooks.cli",
            "deploy",
            "--inventory",
            str(lab.paths.inventory),
            "--command-timeout",
            "15",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("== certificates"):
                set_link(lab, victim, up=False)
                break
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:  # show where it is stuck instead of only that it is
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"deploy still running 300 s after the cut; its threads:\n{err[-6000:]}")
    finally:
        set_link(lab, victim, up=True)
    stdout = "".join(seen) + out
    assert proc.returncode != 0
    failed = re.search(r"phase (\S+) failed; later phases did not run", err)
    assert failed, err[-2000:]
    assert f"{victim}: " in err and "command:" in err and ("timed out" in err or "cannot reach" in err), err[-2000:]
    later = PHASE_ORDER[PHASE_ORDER.index(failed.group(1)) + 1 :]
    assert not [p for p in later if f"== {p}" in stdout], "a later phase ran after the failure"
    print(err[-1500:])

    result, _ = cli("deploy", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "kube-scheduler" in result.stdout.split("== control-plane", 1)[1]


def test_keys_survive_a_rolling_restart_of_every_member(lab: Lab, cluster: Cluster) -> None:
    etcd = client(cluster)
    keys = {f"/kubefab-test/rolling/{i:04d}": f"value-{i}" for i in range(200)}
    for i, (key, value) in enumerate(keys.items()):
        etcd.put(key, value, etcd.endpoints[i % 3])
    # Change every member's config so the deploy must restart them all, one at a time.
    for h in cluster.etcd_hosts:
        lab.run(h.name, "echo '# changed behind kubefab' | sudo tee -a /etc/etcd/etcd.conf >/dev/null")

    acknowledged: list[str] = []
    attempts = 0
    stop = threading.Event()

    def writer() -> None:
        nonlocal attempts
        while not stop.is_set():
            attempts += 1
            key = f"/kubefab-test/during/{attempts:05d}"
            try:
                etcd.put(key, "x", etcd.endpoints[attempts % 3])
                acknowledged.append(key)
            except OSError:
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result, seconds = cli("deploy", "--inventory", str(lab.paths.inventory))
    finally:
        stop.set()
        thread.join()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    restarts = [line for line in result.stdout.splitlines() if "etcd: restarted etcd" in line]
    assert len(restarts) == 3, result.stdout[-3000:]
    TIMINGS["deploy with rolling etcd restart"] = seconds
    print(f"writes during the rolling restart: {len(acknowledged)}/{attempts} acknowledged")

    stored = etcd.prefix("/kubefab-test/rolling/", etcd.endpoints[1])
    assert stored == keys
    during = etcd.prefix("/kubefab-test/during/", etcd.endpoints[2])
    assert set(acknowledged) <= set(during), "an acknowledged write was lost"


def test_restarts_owed_by_a_partial_run_are_done_by_the_next(lab: Lab, cluster: Cluster) -> None:
    """`--only certificates` delivers a changed certificate but runs no service phase: the restart it owes is
    left on the host and done by the next run that reaches the control plane."""
    host = cluster.control_plane[1].name
    lab.run(host, "sudo sh -c 'echo >> /etc/kubernetes/pki/apiserver.crt'")
    result, _ = cli("deploy", "--inventory", str(lab.paths.inventory), "--only", "certificates")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert ": restarted" not in result.stdout  # no service was restarted (the table header says "restarted")
    assert lab.run(host, "cat /var/lib/kubefab/restart-pending").split() == ["kube-apiserver"]
    result, _ = cli("deploy", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    restarts = [line.split()[0] for line in result.stdout.splitlines() if "restarted kube-apiserver" in line]
    assert restarts == [host], result.stdout[-3000:]
    assert lab.run(host, "test -e /var/lib/kubefab/restart-pending && echo left || echo none") == "none"


def test_binary_changed_in_place_is_caught_by_verify_and_replaced_by_deploy(lab: Lab, cluster: Cluster) -> None:
    """Deploy does not hash a binary again while its inode, size and ctime match what it recorded at install.
    A change that keeps the inode and the size (bytes overwritten in place) must still be seen: by `verify`,
    which always hashes in full, and by the next deploy, through the ctime."""
    host, path = cluster.hosts[1].name, "/usr/local/bin/crictl"
    assert path in lab.run(host, "cat /var/lib/kubefab/binaries"), "deploy recorded no hash for the binary"
    before = lab.run(host, f"stat -c '%i %s' {path}")
    lab.run(host, f"printf XX | sudo dd of={path} bs=1 seek=100 conv=notrunc status=none")
    assert lab.run(host, f"stat -c '%i %s' {path}") == before  # same inode, same size
    result, _ = cli("verify", "--inventory", str(lab.paths.inventory), "--options", "-k binaries")
    assert result.returncode != 0 and path in result.stdout, result.stdout[-3000:]
    result, _ = cli("deploy", "--inventory", str(lab.paths.inventory), "--only", "nodes")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 change(s)" in result.stdout, result.stdout[-3000:]
    result, _ = cli("verify", "--inventory", str(lab.paths.inventory), "--options", "-k binaries")
    assert result.returncode == 0, result.stdout[-3000:]
