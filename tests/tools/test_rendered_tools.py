"""Rendered files read by the real programs that will read them on the hosts: systemd-analyze verify on every
unit, `haproxy -c`, `keepalived -t`, and a real 3-member etcd started from the rendered environment files."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from tooling import need

from kubefab.playbooks import tree

pytestmark = pytest.mark.tools
# keepalived -t wants the VRRP interface to exist and not be loopback: a bridge with no ports stands in.
CHECK_IFACE = "kfcheck0"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    from kubefab.playbooks.clusterdir import ensure_inputs
    from kubefab.playbooks.model import Cluster
    from tests.conftest import Rendered

    tmp = tmp_path_factory.mktemp("rendered")
    # Hosts on loopback addresses so the etcd members can really run on this machine.
    inventory = tmp / "loopback.yaml"
    inventory.write_text(f"""
name: loop
kubernetes_version: "1.35"
cluster_dir: {tmp / "cluster"}
bundle: {tmp / "bundle"}
api: {{vip: 127.0.1.100, interface: {CHECK_IFACE}, unicast: true}}
hosts:
  - {{name: m-1, ip: 127.0.1.1, roles: [etcd, control_plane, worker, lb]}}
  - {{name: m-2, ip: 127.0.1.2, roles: [etcd, control_plane, worker, lb]}}
  - {{name: m-3, ip: 127.0.1.3, roles: [etcd, control_plane, worker]}}
""")
    # Loopback hosts are refused from an inventory file; the validation context allows them here only.
    data = yaml.safe_load(inventory.read_text()) | {"source": inventory}
    cluster = Cluster.model_validate(data, context={"allow_loopback": True})
    tree.write(tmp / "out", Rendered(cluster, ensure_inputs(cluster)).plans, {})
    return tmp / "out"


def test_systemd_analyze_verify_every_unit(rendered, tmp_path: Path) -> None:
    """In a scratch root holding the machine's own system units and the unit's executables, so that
    verify judges the rendered unit itself; it exits 0 on warnings, so any output fails the test."""
    analyze = need("systemd-analyze")
    out = rendered
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    units = sorted((out / "m-1" / "etc/systemd/system").glob("*.service"))
    assert {u.name for u in units} == {
        "etcd.service",
        "kube-apiserver.service",
        "kube-controller-manager.service",
        "kube-scheduler.service",
        "containerd.service",
        "kubelet.service",
        "kube-proxy.service",
    }
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
        for line in unit.read_text().splitlines():
            if line.startswith(("ExecStart=", "ExecStartPre=")):
                exe = root / line.split("=", 1)[1].lstrip("-").split()[0].lstrip("/")
                exe.parent.mkdir(parents=True, exist_ok=True)
                exe.write_text("#!/bin/sh\n")
                exe.chmod(0o755)
    for unit in units:
        check = subprocess.run(
            [analyze, "verify", f"--root={root}", unit.name], capture_output=True, text=True, timeout=60
        )
        assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), (unit.name, check.stderr)


def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    analyze = need("systemd-analyze")
    unit = tmp_path / "broken.service"
    unit.write_text("[Service]\nType=notfy\nExecStart=/bin/true\n")
    check = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "notfy" in check.stdout + check.stderr


def _local(text: str, host_root: Path, prefixes: tuple[str, ...]) -> str:
    """Point absolute paths the config names at the rendered tree, where the same files exist."""
    for prefix in prefixes:
        text = text.replace(f" {prefix}", f" {host_root}{prefix}").replace(f'"{prefix}', f'"{host_root}{prefix}')
    return text


@pytest.mark.parametrize("host", ["m-1", "m-2"])
def test_haproxy_accepts_the_rendered_config(rendered, tmp_path: Path, host: str) -> None:
    haproxy = need("haproxy")
    out = rendered
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        _local((out / host / "etc/haproxy/haproxy.cfg").read_text(), out / host, ("/etc/kubernetes/", "/etc/haproxy/"))
    )
    check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    broken = tmp_path / "broken.cfg"
    broken.write_text(cfg.read_text().replace("balance roundrobin", "balance roundrobbin"))
    assert subprocess.run([haproxy, "-c", "-f", str(broken)], capture_output=True, timeout=60).returncode != 0


@pytest.fixture(scope="module")
def check_interface():
    if os.geteuid() != 0:
        pytest.skip("creating the interface keepalived -t checks for needs root")
    subprocess.run(["ip", "link", "add", CHECK_IFACE, "type", "bridge"], check=True)
    yield CHECK_IFACE
    subprocess.run(["ip", "link", "del", CHECK_IFACE], check=True)


@pytest.mark.parametrize("host", ["m-1", "m-2"])
def test_keepalived_accepts_the_rendered_config(rendered, check_interface, tmp_path: Path, host: str) -> None:
    keepalived = need("keepalived")
    out = rendered
    conf = tmp_path / "keepalived.conf"
    text = _local((out / host / "etc/keepalived/keepalived.conf").read_text(), out / host, ("/etc/keepalived/",))
    conf.write_text(text)
    check = subprocess.run([keepalived, "-t", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert ("MASTER" if host == "m-1" else "BACKUP") in text
    broken = tmp_path / "broken.conf"
    broken.write_text(text.replace("advert_int", "advert_intt"))
    assert subprocess.run([keepalived, "-t", "-f", str(broken)], capture_output=True, timeout=60).returncode != 0


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_real_etcd_cluster_from_rendered_config(rendered, tmp_path: Path) -> None:
    """Three real etcd members, each started with its host's rendered etcd.conf, initial-cluster.conf and
    certificates. Changed for one machine: paths point at the rendered tree, the data dir is a scratch dir, and
    the extra listener on 127.0.0.1 (which all three members would share here) is dropped."""
    etcd = need("etcd")
    etcdctl = need("etcdctl")
    out = rendered
    procs = []
    try:
        for host in ("m-1", "m-2", "m-3"):
            env = {
                k: _local(" " + v, out / host, ("/etc/kubernetes/", "/etc/etcd/")).strip()
                for name in ("etcd.conf", "initial-cluster.conf")
                for k, v in _env(out / host / "etc/etcd" / name).items()
            }
            env["ETCD_DATA_DIR"] = str(tmp_path / host)
            env["ETCD_LISTEN_CLIENT_URLS"] = env["ETCD_ADVERTISE_CLIENT_URLS"]
            env.pop("ETCD_LISTEN_METRICS_URLS")
            log = open(tmp_path / f"{host}.log", "w")  # noqa: SIM115 (closed with the process)
            procs.append(
                (subprocess.Popen([etcd], env={"PATH": os.environ["PATH"], **env}, stdout=log, stderr=log), log)
            )
        pki = out / "m-1" / "etc/kubernetes/pki"
        endpoints = ",".join(f"https://127.0.1.{i}:2379" for i in (1, 2, 3))
        tls = [
            "--cacert",
            str(pki / "etcd/ca.crt"),
            "--cert",
            str(pki / "etcd/healthcheck-client.crt"),
            "--key",
            str(pki / "etcd/healthcheck-client.key"),
        ]
        deadline = time.monotonic() + 60
        while True:
            health = subprocess.run(
                [etcdctl, "--endpoints", endpoints, *tls, "endpoint", "health"],
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "ETCDCTL_API": "3"},
            )
            if health.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert health.returncode == 0, health.stdout + health.stderr + (tmp_path / "m-1.log").read_text()[-2000:]
        assert (health.stdout + health.stderr).count("is healthy") == 3
        members = subprocess.run(
            [etcdctl, "--endpoints", endpoints, *tls, "member", "list"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        assert sorted(line.split(", ")[2] for line in members.stdout.splitlines()) == ["m-1", "m-2", "m-3"]
        plain = subprocess.run(
            [
                etcdctl,
                "--endpoints",
                "https://127.0.1.1:2379",
                "--cacert",
                str(pki / "etcd/ca.crt"),
                "endpoint",
                "health",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        assert plain.returncode != 0, "etcd accepted a client without a certificate"
    finally:
        for proc, log in procs:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
