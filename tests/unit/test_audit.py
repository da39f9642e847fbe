"""The CIS-style checks: each passes on what kubefab renders and fails on the misconfiguration it is for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from kubefab.playbooks import audit
from kubefab.playbooks.clusterdir import ensure_inputs
from kubefab.playbooks.inventory import load
from kubefab.playbooks.plan import File
from tests.conftest import EXAMPLE

CP = "/etc/kubernetes/apiserver"
KUBELET = "/var/lib/kubelet/config.yaml"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("audit")
    data = yaml.safe_load(EXAMPLE.read_text()) | {"cluster_dir": str(tmp / "c"), "bundle": str(tmp / "b")}
    (tmp / "i.yaml").write_text(yaml.safe_dump(data))
    cluster = load(tmp / "i.yaml")
    return {f.path: f for p in audit.plans_for(ensure_inputs(cluster), cluster.host("k8s-1")) for f in p.files}


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
        ("apiserver-cipher-suites", CP, "--tls-cipher-suites=", "--tls-cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA,"),
        ("apiserver-cipher-suites", CP, "--tls-min-version=VersionTLS12 \\\n--tls-cipher-suites=", "--x="),
        ("kubelet-cipher-suites", KUBELET, "tlsCipherSuites:\n", "tlsCipherSuites:\n  - TLS_RSA_WITH_RC4_128_SHA\n"),
        ("kubelet-hardening", KUBELET, "seccompDefault: true", "seccompDefault: false"),
        ("kubelet-hardening", KUBELET, "podPidsLimit: 4096", "podPidsLimit: -1"),
        ("kubelet-hardening", KUBELET, "protectKernelDefaults: true", "protectKernelDefaults: false"),
        ("kubelet-hardening", "/etc/sysctl.d/99-kubernetes.conf", "kernel.panic = 10", "kernel.panic = 0"),
        ("admission-plugins", CP, "NodeRestriction,EventRateLimit,", "NodeRestriction,"),
        ("admission-plugins", "/etc/kubernetes/admission-config.yaml", "name: EventRateLimit", "name: Other"),
        ("service-account-tokens", CP, "--service-account-extend-token-expiration=false \\\n", ""),
        ("terminated-pod-gc", "/etc/kubernetes/controller-manager", "--terminated-pod-gc-threshold=1000", "--x=1"),
        # Injection: what a value carrying a newline, a quote or a TOML/YAML fragment would have made of a file.
        ("env-files", "/etc/kubernetes/kubelet", '--v=2"', '--v=2"\nLD_PRELOAD=/tmp/x.so'),
        ("env-files", "/etc/kubernetes/kubelet", "--hostname-override=k8s-1", "--hostname-override=k8s-1 $(reboot)"),
        (
            "containerd-config",
            "/etc/containerd/config.toml",
            '      BinaryName = "/usr/local/sbin/runc"\n',
            '      BinaryName = "/usr/local/sbin/runc"\n'
            "  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.evil.options]\n"
            '      BinaryName = "/tmp/evil"\n',
        ),
        ("containerd-config", "/etc/containerd/config.toml", 'sandbox = "', 'sandbox = "x y'),
        ("containerd-config", "/etc/containerd/certs.d/docker.io/hosts.toml", "[host.", "skip_verify = true\n[host."),
        (
            "coredns-manifest",
            "/etc/kubernetes/addons/20-coredns.yaml",
            "allowPrivilegeEscalation: false",
            "privileged: true",
        ),
        (
            "coredns-manifest",
            "/etc/kubernetes/addons/20-coredns.yaml",
            'args: ["-conf"',
            'command: ["/bin/sh"]\n          args: ["-conf"',
        ),
    ],
)
def test_check_passes_on_render_and_fails_on_misconfiguration(files, check, path, old, new) -> None:
    assert verdict(check, files), f"{check} fails on kubefab's own render"
    assert not verdict(check, edit(files, path, old, new)), f"{check} did not catch the change"


def test_file_modes(files) -> None:
    assert verdict("file-modes", files)
    for path in ("/etc/kubernetes/pki/sa.key", "/etc/kubernetes/apiserver", "/etc/systemd/system/kubelet.service"):
        loose = files | {path: dataclasses.replace(files[path], mode=0o644)}
        assert not verdict("file-modes", loose), path


def test_kubelet_certificate_rotation_is_a_stated_exception(files) -> None:
    assert verdict("kubelet-certificate-rotation", files) == "warn"
    rotating = edit(files, KUBELET, "rotateCertificates: false", "rotateCertificates: true")
    assert verdict("kubelet-certificate-rotation", rotating) is True


def test_always_pull_images_is_an_option(files) -> None:
    assert verdict("admission-plugins", files) == "warn"
    pulling = edit(files, CP, "DenyServiceExternalIPs", "DenyServiceExternalIPs,AlwaysPullImages")
    assert verdict("admission-plugins", pulling) is True


def test_ca_key_placement(files) -> None:
    assert audit.CHECKS["ca-key-placement"][1](files, "control_plane") is None  # allowed there
    assert not verdict("ca-key-placement", files, role="worker")
    without = {p: f for p, f in files.items() if p != "/etc/kubernetes/pki/ca.key"}
    assert verdict("ca-key-placement", without, role="worker")


def test_every_check_is_exercised() -> None:
    src = Path(__file__).read_text()
    for check in audit.CHECKS:
        assert f'"{check}"' in src, f"no test for {check}"


def test_static_tokens_opt_in(render_example) -> None:
    """The book's static token file: generated tokens, 0600 on control-plane hosts only, never shown in a
    diff, and listed by the audit as a weaker mechanism."""
    users = [{"name": "ops", "groups": ["system:masters"]}, {"name": "ci-reader"}]
    rendered = render_example(lambda d: d["api"].update(token_users=users))
    token = {h: [f for p in ps for f in p.files if f.path.endswith(".csv")] for h, ps in rendered.plans.items()}
    control_plane = {h.name for h in rendered.cluster.control_plane}
    for host, found in token.items():
        assert bool(found) == (host in control_plane), host
    csv = token["k8s-1"][0]
    assert csv.mode == 0o600 and csv.secret
    rows = [line.split(",", 3) for line in csv.content.decode().splitlines()]
    assert [r[1] for r in rows] == ["ops", "ci-reader"]
    assert rows[0][3] == "system:masters" and rows[1][3] == ""
    tokens = [r[0] for r in rows]
    assert len(set(tokens)) == 2 and all(len(t) == 64 for t in tokens)
    assert rendered.inputs.secrets.tokens == {"ops": tokens[0], "ci-reader": tokens[1]}
    files = {f.path: f for p in rendered.plans["k8s-1"] for f in p.files}
    assert "--token-auth-file=/etc/kubernetes/token-auth.csv" in files[CP].content.decode()
    assert verdict("static-tokens", files) == "warn"
    assert not verdict("static-tokens", files | {csv.path: dataclasses.replace(csv, mode=0o644)})
    plain = {f.path: f for p in render_example().plans["k8s-1"] for f in p.files}
    assert audit.CHECKS["static-tokens"][1](plain, "control_plane") is None
