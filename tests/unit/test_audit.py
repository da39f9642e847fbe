"""The CIS-style checks: each passes on what kubefab renders and fails on the misconfiguration it is for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from playbooks import audit
from playbooks.clusterdir import ensure_inputs
from playbooks.inventory import load
from playbooks.plan import File
from tests.conftest import EXAMPLE, Rendered

CP = "/etc/kubernetes/apiserver"
KUBELET = "/var/lib/kubelet/config.yaml"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("audit")
    data = yaml.safe_load(EXAMPLE.read_text()) | {"cluster_dir": str(tmp / "c"), "bundle": str(tmp / "b")}
    (tmp / "i.yaml").write_text(yaml.safe_dump(data))
    cluster = load(tmp / "i.yaml")
    rendered = Rendered(cluster, ensure_inputs(cluster))
    return {f.path: f for p in rendered.plans["k8s-1"] for f in p.files}


def edit(files: dict[str, File], path: str, old: str, new: str) -> dict[str, File]:
    text = files[path].content.decode()
    assert old in text, f"{old!r} not in {path}"
    return files | {path: dataclasses.replace(files[path], content=text.replace(old, new).encode())}


def verdict(check: str, files: dict[str, File], role: str = "control_plane") -> bool:
    result = audit.CHECKS[check][1](files, role)
    assert result is not None, f"{check} did not apply"
    return result[0]


@pytest.mark.parametrize(
    ("check", "path", "old", "new"),
    [
        ("kubelet-anonymous-auth", KUBELET, "anonymous:\n    enabled: false", "anonymous:\n    enabled: true"),
        ("kubelet-authorization", KUBELET, "mode: Webhook", "mode: AlwaysAllow"),
        ("kubelet-read-only-port", KUBELET, "readOnlyPort: 0", "readOnlyPort: 10255"),
        ("apiserver-authorization", CP, "--authorization-mode=Node,RBAC", "--authorization-mode=AlwaysAllow"),
        ("apiserver-anonymous-auth", CP, "--anonymous-auth=false", "--anonymous-auth=true"),
        ("apiserver-insecure-port", CP, "--profiling=false", "--profiling=false \\\n--insecure-port=8080"),
        (
            "apiserver-node-restriction",
            CP,
            "--enable-admission-plugins=NodeRestriction",
            "--enable-admission-plugins=AlwaysAdmit",
        ),
        ("apiserver-kubelet-ca", CP, "--kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt \\\n", ""),
        ("profiling", "/etc/kubernetes/kube-scheduler.yaml", "enableProfiling: false", "enableProfiling: true"),
        ("profiling", "/etc/kubernetes/controller-manager", "--profiling=false", "--profiling=true"),
        (
            "encryption-at-rest",
            "/etc/kubernetes/encryption-config.yaml",
            "      - secretbox:",
            "      - identity: {}\n      - secretbox:",
        ),
        ("audit-log", CP, "--audit-log-maxbackup=10 \\\n", ""),
        (
            "etcd-client-cert-auth",
            "/etc/etcd/etcd.conf",
            "ETCD_PEER_CLIENT_CERT_AUTH=true",
            "ETCD_PEER_CLIENT_CERT_AUTH=false",
        ),
        ("etcd-client-cert-auth", "/etc/etcd/etcd.conf", "https://127.0.0.1:2379", "http://127.0.0.1:2379"),
        ("default-passwords", "/etc/keepalived/keepalived.conf", "auth_pass ", "auth_pass 1111\n#"),
    ],
)
def test_check_passes_on_render_and_fails_on_misconfiguration(files, check, path, old, new) -> None:
    assert verdict(check, files), f"{check} fails on kubefab's own render"
    assert not verdict(check, edit(files, path, old, new)), f"{check} did not catch the change"


def test_key_modes(files) -> None:
    assert verdict("key-file-modes", files)
    loose = files | {"/etc/kubernetes/pki/sa.key": dataclasses.replace(files["/etc/kubernetes/pki/sa.key"], mode=0o644)}
    assert not verdict("key-file-modes", loose)


def test_ca_key_placement(files) -> None:
    assert audit.CHECKS["ca-key-placement"][1](files, "control_plane") is None  # allowed there
    assert not verdict("ca-key-placement", files, role="worker")
    without = {p: f for p, f in files.items() if p != "/etc/kubernetes/pki/ca.key"}
    assert verdict("ca-key-placement", without, role="worker")


def test_every_check_is_exercised() -> None:
    src = Path(__file__).read_text()
    for check in audit.CHECKS:
        assert f'"{check}"' in src, f"no test for {check}"
