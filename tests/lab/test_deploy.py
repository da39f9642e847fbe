"""`kubefab deploy` end to end on 3 lab hosts (all etcd + control plane + worker, two lb, as the book): real
SSH, systemd, etcd, HAProxy, keepalived and the real Kubernetes components (tests/lab/test_kubernetes.py looks
at the control plane itself)."""

from __future__ import annotations

import csv
import http.client
import io
import json
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from labkit import TIMINGS, Etcd, Lab, cli, start_times

from kubefab.playbooks import identity
from kubefab.playbooks.inventory import load
from kubefab.playbooks.model import Cluster

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def deployed(lab: Lab) -> Cluster:
    result, seconds = cli("deploy", "--inventory", str(lab.paths.inventory))
    TIMINGS["deploy, 3 hosts, first run"] = seconds
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "deploy finished" in result.stdout
    return load(lab.paths.inventory)


def pki(cluster: Cluster) -> Path:
    return cluster.dir / "pki"


def etcd(cluster: Cluster) -> Etcd:
    return Etcd(pki(cluster), [f"https://{h.address}:2379" for h in cluster.etcd_hosts])


def vip_holders(lab: Lab, cluster: Cluster) -> list[str]:
    return [
        h.name for h in cluster.lb_hosts if f" {cluster.api.vip}/" in lab.run(h.name, "ip -4 -o addr show dev host0")
    ]


def readyz(cluster: Cluster, timeout: float = 3) -> str:
    """GET /readyz through the VIP from this machine: the cluster CA verifies the server (IP SAN = VIP) and
    the admin certificate authenticates us, as kubectl would."""
    tls = ssl.create_default_context(cafile=str(pki(cluster) / "ca.crt"))
    tls.load_cert_chain(pki(cluster) / "admin.crt", pki(cluster) / "admin.key")
    conn = http.client.HTTPSConnection(str(cluster.api.vip), cluster.api.port, context=tls, timeout=timeout)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        return f"{response.status} {response.read().decode().strip()}"
    finally:
        conn.close()


def test_admin_kubeconfig_left_in_the_cluster_directory(deployed: Cluster) -> None:
    doc = yaml.safe_load((deployed.dir / "kubeconfig" / "admin.conf").read_text())
    assert doc["clusters"][0]["cluster"]["server"] == f"https://{deployed.api.vip}:{deployed.api.port}"


def test_etcd_members_healthy_over_mutual_tls(deployed: Cluster) -> None:
    client = etcd(deployed)
    client.put("/kubefab-test/written-on-1", "hello", client.endpoints[0])
    for endpoint in client.endpoints[1:]:
        assert client.get("/kubefab-test/written-on-1", endpoint) == "hello", endpoint


def test_etcd_refuses_a_client_without_certificate(deployed: Cluster) -> None:
    tls = ssl.create_default_context(cafile=str(pki(deployed) / "etcd" / "ca.crt"))
    conn = http.client.HTTPSConnection(str(deployed.etcd_hosts[0].address), 2379, context=tls, timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        conn.request("POST", "/v3/kv/range", '{"key": "Lw=="}')
        conn.getresponse().read()


def test_vip_is_on_the_master(lab: Lab, deployed: Cluster) -> None:
    assert vip_holders(lab, deployed) == [deployed.lb_hosts[0].name]


def test_haproxy_forwards_to_every_apiserver(lab: Lab, deployed: Cluster) -> None:
    password = yaml.safe_load((deployed.dir / "secrets.yaml").read_text())["stats_password"]
    master = deployed.lb_hosts[0].name
    deadline = time.monotonic() + 20
    while True:
        stats = lab.run(master, f"curl -s -u kubefab:{password} 'http://127.0.0.1:{deployed.api.stats.port}/stats;csv'")
        rows = {
            r["svname"]: r["status"]
            for r in csv.DictReader(io.StringIO(stats.removeprefix("# ")))
            if r["pxname"] == "kube-apiserver"
        }
        servers = {k: v for k, v in rows.items() if k not in ("FRONTEND", "BACKEND")}
        if all(v == "UP" for v in servers.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert servers == {h.name: "UP" for h in deployed.control_plane}


def test_readyz_through_the_vip_with_ca_and_admin_certificate(deployed: Cluster) -> None:
    assert readyz(deployed) == "200 ok"


def test_verify_task_passes(lab: Lab, deployed: Cluster) -> None:
    result, _ = cli("verify", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "every check passed" in result.stdout


def test_plan_and_verify_through_a_bastion_to_names_only_it_resolves(
    lab: Lab, deployed: Cluster, tmp_path: Path
) -> None:
    """lab-1 is the bastion (ProxyJump) and every host's ssh.host is its name, which only the lab hosts resolve
    (their /etc/hosts): plan and verify can only have reached them through the bastion."""
    jump = str(deployed.hosts[0].address)
    assert subprocess.run(["getent", "hosts", deployed.hosts[1].name], capture_output=True).returncode != 0

    def through_bastion(d: dict) -> None:
        d["ssh"]["bastion"] = {"host": jump}
        for h in d["hosts"]:
            h["ssh"] = {"host": h["name"]}

    routed = variant(lab, tmp_path, "bastion.yaml", through_bastion)
    result, _ = cli("inventory.check", "--inventory", str(routed))
    assert f"kubefab@{deployed.hosts[1].name}:22 via kubefab@{jump}:22" in result.stdout, result.stdout[-2000:]
    result, _ = cli("plan", "--exit-code", "--inventory", str(routed))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "no changes" in result.stdout
    result, _ = cli("verify", "--inventory", str(routed))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "every check passed" in result.stdout


def test_failover_when_haproxy_dies_on_the_master(lab: Lab, deployed: Cluster) -> None:
    master, backup = (h.name for h in deployed.lb_hosts[:2])
    lab.run(master, "sudo systemctl stop haproxy")
    start = time.monotonic()
    try:
        moved = answered = None
        while time.monotonic() - start < 30:
            if moved is None and vip_holders(lab, deployed) == [backup]:
                moved = time.monotonic() - start
            if moved is not None:
                try:
                    if readyz(deployed, timeout=1) == "200 ok":
                        answered = time.monotonic() - start
                        break
                except OSError:
                    pass
            time.sleep(0.05)
        assert moved is not None, f"VIP still on {vip_holders(lab, deployed)}"
        assert answered is not None, "/readyz through the VIP did not answer after the move"
        TIMINGS["failover: VIP moved after haproxy stop"] = moved
        TIMINGS["failover: /readyz through VIP answers again"] = answered
        print(f"VIP moved {master} -> {backup} in {moved:.2f} s; /readyz answered after {answered:.2f} s")
    finally:
        lab.run(master, "sudo systemctl start haproxy")
    # With HAProxy back, the master (highest priority) takes the VIP back.
    deadline = time.monotonic() + 30
    while vip_holders(lab, deployed) != [master] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert vip_holders(lab, deployed) == [master]


def test_second_deploy_changes_nothing_and_restarts_nothing(lab: Lab, deployed: Cluster) -> None:
    before = start_times(lab, deployed)
    result, seconds = cli("deploy", "--inventory", str(lab.paths.inventory))
    TIMINGS["deploy, 3 hosts, second (no-op) run"] = seconds
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 change(s)" in result.stdout, result.stdout[-3000:]
    assert start_times(lab, deployed) == before
    print(f"no-op re-run: {seconds:.1f} s")


def test_plan_after_deploy_shows_no_changes(lab: Lab, deployed: Cluster) -> None:
    result, _ = cli("plan", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "no changes" in result.stdout


def variant(lab: Lab, tmp_path: Path, name: str, change) -> Path:
    data = yaml.safe_load(lab.paths.inventory.read_text())
    change(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def cluster_files(cluster: Cluster) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(cluster.dir.rglob("*")) if p.is_file()}


def test_dry_run_is_plan_and_plan_exit_code_says_nothing_is_pending(lab: Lab, deployed: Cluster) -> None:
    result, _ = cli("deploy", "--dry-run", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "no changes" in result.stdout and "deploy finished" not in result.stdout
    result, _ = cli("plan", "--exit-code", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_plan_of_a_new_san_is_readable_pending_and_writes_nothing(lab: Lab, deployed: Cluster, tmp_path: Path) -> None:
    wider = variant(lab, tmp_path, "wider.yaml", lambda d: d["api"].setdefault("extra_sans", []).append("api.lab.test"))
    before, started = cluster_files(deployed), start_times(lab, deployed)
    result, _ = cli("plan", "--exit-code", "--inventory", str(wider))
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-2000:]
    out = result.stdout
    assert "local pki/apiserver.crt: reissued: DNS SANs ['api.lab.test'] changed" in out, out[-3000:]
    host = deployed.control_plane[0].name
    assert f"{host} certificates: ~ /etc/kubernetes/pki/apiserver.crt (certificate)" in out, out[-3000:]
    assert "+DNS SANs: api.lab.test, kubernetes" in out and "-DNS SANs: kubernetes" in out, out[-3000:]
    assert "apiserver.key" not in out  # a reissue keeps the key
    assert "BEGIN CERTIFICATE" not in out and "PRIVATE KEY" not in out
    # Nothing written anywhere: the cluster directory and the hosts are as they were, so the old inventory
    # still plans nothing (before, plan reissued the certificate locally and the next deploy reissued it again).
    assert cluster_files(deployed) == before
    assert start_times(lab, deployed) == started
    result, _ = cli("plan", "--exit-code", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-3000:]


def test_another_cluster_directory_is_refused_with_both_fingerprints(
    lab: Lab, deployed: Cluster, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "fresh-cluster-dir"
    other = variant(lab, tmp_path, "other.yaml", lambda d: d.update(cluster_dir=str(elsewhere)))
    (ours,) = identity.fingerprints((pki(deployed) / "ca.crt").read_bytes())
    started = start_times(lab, deployed)
    for task in ("deploy", "plan", "verify"):
        result, _ = cli(task, "--inventory", str(other))
        shown = result.stderr[-4000:]
        assert result.returncode == 1, f"{task}: {shown}"
        assert "another cluster directory" in shown and ours in shown, f"{task}: {shown}"
        assert str(elsewhere) in shown, f"{task}: {shown}"
        assert not elsewhere.exists(), f"{task} created a new CA in {elsewhere}"
    assert start_times(lab, deployed) == started


def test_plan_shows_a_diff_and_changes_nothing(lab: Lab, deployed: Cluster) -> None:
    host = deployed.hosts[2].name
    lab.run(host, "sudo sed -i 's/--v=2/--v=4/' /etc/kubernetes/apiserver")
    try:
        result, _ = cli("plan", "--inventory", str(lab.paths.inventory))
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"{host} control-plane: ~ /etc/kubernetes/apiserver" in result.stdout
        # A unified diff: the host's line removed, kubefab's added.
        assert "\n---v=4" in result.stdout and "\n+--v=2" in result.stdout, result.stdout[-2000:]
        assert f"{host} control-plane: > restart kube-apiserver" in result.stdout
        assert "--v=4" in lab.run(host, "sudo cat /etc/kubernetes/apiserver"), "plan changed the host"
    finally:
        result, _ = cli("deploy", "--inventory", str(lab.paths.inventory), "--only", "control-plane")
        assert result.returncode == 0, result.stdout[-3000:]
        assert "restarted" in result.stdout and "kube-apiserver" in result.stdout


def test_limit_plans_and_deploys_only_its_host_and_refuses_a_rotation(
    lab: Lab, deployed: Cluster, tmp_path: Path
) -> None:
    second, third = deployed.hosts[1].name, deployed.hosts[2].name
    for host in (second, third):
        lab.run(host, "sudo sed -i 's/--v=2/--v=4/' /etc/kubernetes/apiserver")
    try:
        result, _ = cli("plan", "--json", "--exit-code", "--limit", third, "--inventory", str(lab.paths.inventory))
        assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-2000:]
        doc = json.loads(result.stdout)
        assert doc["hosts"] == [third] and {f["host"] for f in doc["preflight"]} == {third}
        assert "addons" not in doc["phases"] and "cluster-wide" in result.stderr
        changes = {(c["host"], c["phase"], c["change"].splitlines()[0]) for c in doc["changes"]}
        assert changes == {
            (third, "control-plane", "~ /etc/kubernetes/apiserver"),
            (third, "control-plane", "> restart kube-apiserver"),
        }, doc["changes"]
        before = start_times(lab, deployed)
        result, _ = cli("deploy", "--limit", third, "--inventory", str(lab.paths.inventory))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        after = start_times(lab, deployed)
        assert {k for k in before if before[k] != after[k]} == {f"{third}/kube-apiserver.service"}
        assert "--v=4" in lab.run(second, "sudo cat /etc/kubernetes/apiserver"), "--limit changed another host"
        result, _ = cli("plan", "--exit-code", "--inventory", str(lab.paths.inventory))
        assert result.returncode == 3 and f"{second} control-plane: > restart kube-apiserver" in result.stdout
        assert f"{third} control-plane" not in result.stdout, result.stdout[-3000:]
        # A certificate reissue is for every host that holds it: refused under --limit, nothing written.
        wider = variant(lab, tmp_path, "wider.yaml", lambda d: d["api"].setdefault("extra_sans", []).append("x.test"))
        files = cluster_files(deployed)
        result, _ = cli("deploy", "--limit", third, "--inventory", str(wider))
        assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
        assert "--limit refused" in result.stderr and "apiserver (reissued" in result.stderr, result.stderr
        assert cluster_files(deployed) == files and start_times(lab, deployed) == after
        result, _ = cli("verify", "--limit", third, "--inventory", str(lab.paths.inventory))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert f"--hosts=ssh://{third} " in result.stdout and "every check passed on 1 hosts" in result.stdout
    finally:
        result, _ = cli("deploy", "--inventory", str(lab.paths.inventory), "--only", "control-plane")
        assert result.returncode == 0, result.stdout[-3000:]


def test_certs_check_reads_the_hosts_certificates_and_names_a_missing_one(lab: Lab, deployed: Cluster) -> None:
    result, _ = cli("certs.check", "--hosts", "--json", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    rows = json.loads(result.stdout)["certificates"]
    assert {r["host"] for r in rows} == {h.name for h in deployed.hosts} and {r["status"] for r in rows} == {"ok"}
    third = deployed.hosts[2].name
    apiserver = next(r for r in rows if r["host"] == third and r["file"] == "/etc/kubernetes/pki/apiserver.crt")
    assert apiserver["subject"] == "CN=kube-apiserver" and apiserver["days_left"] >= 364
    kubelet = next(r for r in rows if r["host"] == third and r["file"] == "/etc/kubernetes/kubelet.conf")
    assert kubelet["subject"] == f"CN=system:node:{third},O=system:nodes"
    before = start_times(lab, deployed)
    lab.run(third, "sudo mv /etc/kubernetes/kube-proxy.conf /root/kube-proxy.conf.moved")
    try:
        result, _ = cli("certs.check", "--hosts", "--inventory", str(lab.paths.inventory))
        assert result.returncode == 1 and "need attention" in result.stderr, result.stdout[-2000:]
        missing = [line for line in result.stdout.splitlines() if " missing " in f" {line} "]
        assert len(missing) == 1 and "/etc/kubernetes/kube-proxy.conf" in missing[0] and third in missing[0]
    finally:
        result, _ = cli(
            "deploy", "--limit", third, "--only", "certificates,nodes", "--inventory", str(lab.paths.inventory)
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    after = start_times(lab, deployed)
    assert {k for k in before if before[k] != after[k]} == {f"{third}/kube-proxy.service"}
    result, _ = cli("certs.check", "--hosts", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-3000:]
