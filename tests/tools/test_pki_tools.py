"""The PKI checked by the real programs that will consume it: `openssl verify` with the TLS purpose,
a real kubectl reading every kubeconfig, and a real etcd enforcing client-certificate authentication."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from tooling import need

from kubefab.pki.profiles import identities
from kubefab.pki.store import ensure, kubeconfig_dir, pki_dir
from kubefab.playbooks.inventory import load

pytestmark = pytest.mark.tools
EXAMPLE = Path(__file__).parents[2] / "inventory" / "example.yaml"
CA_FILES = {"kubernetes": "ca.crt", "etcd": "etcd/ca.crt", "front-proxy": "front-proxy-ca.crt"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("pki")
    data = yaml.safe_load(EXAMPLE.read_text())
    data["cluster_dir"] = str(tmp / "cluster")
    (tmp / "inv.yaml").write_text(yaml.safe_dump(data))
    c = load(tmp / "inv.yaml")
    ensure(c)
    return c


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def test_openssl_verifies_every_leaf_with_its_purpose(cluster) -> None:
    need("openssl")
    checked = 0
    for ident in identities(cluster):
        ca = pki_dir(cluster) / CA_FILES[ident.authority]
        crt = pki_dir(cluster) / f"{ident.file}.crt"
        for usage in ident.request.usages:
            purpose = {"server": "sslserver", "client": "sslclient"}[usage]
            result = run("openssl", "verify", "-purpose", purpose, "-CAfile", str(ca), str(crt))
            assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stdout + result.stderr
            checked += 1
        # A client-only certificate must not pass as a server (and the reverse).
        if ident.request.usages == ("client",):
            result = run("openssl", "verify", "-purpose", "sslserver", "-CAfile", str(ca), str(crt))
            assert result.returncode != 0
    assert checked >= len(identities(cluster))


def test_leaf_from_wrong_ca_fails_openssl(cluster) -> None:
    need("openssl")
    result = run(
        "openssl",
        "verify",
        "-CAfile",
        str(pki_dir(cluster) / "ca.crt"),
        str(pki_dir(cluster) / "apiserver-etcd-client.crt"),
    )
    assert result.returncode != 0


def test_kubectl_reads_every_kubeconfig(cluster) -> None:
    kubectl = need("kubectl")
    configs = sorted(kubeconfig_dir(cluster).glob("*.conf"))
    assert len(configs) == 4 + len(cluster.workers)  # admin, controller-manager, scheduler, kube-proxy
    for conf in configs:
        view = run(kubectl, "--kubeconfig", str(conf), "config", "view", "--raw", "-o", "yaml")
        assert view.returncode == 0, view.stderr
        doc = yaml.safe_load(view.stdout)
        server = doc["clusters"][0]["cluster"]["server"]
        expected = (
            "https://127.0.0.1:6443"
            if conf.name in ("controller-manager.conf", "scheduler.conf")
            else cluster.server_url
        )
        assert server == expected, conf.name
        contexts = run(kubectl, "--kubeconfig", str(conf), "config", "get-contexts", "-o", "name")
        assert contexts.returncode == 0 and contexts.stdout.strip() == doc["current-context"]
        user = doc["users"][0]["user"]
        assert _same_key(user["client-certificate-data"], user["client-key-data"]), conf.name


def _same_key(cert_b64: str, key_b64: str) -> bool:
    import base64

    cert_pub = run("openssl", "x509", "-noout", "-pubkey", input=base64.b64decode(cert_b64).decode()).stdout
    key_pub = run("openssl", "pkey", "-pubout", input=base64.b64decode(key_b64).decode()).stdout
    return bool(cert_pub) and cert_pub == key_pub


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def etcd(cluster, tmp_path_factory: pytest.TempPathFactory):
    """A real etcd (Debian's etcd-server) on loopback with k8s-1's member certificates and client-cert-auth."""
    binary = need("etcd")
    need("etcdctl")
    data = tmp_path_factory.mktemp("etcd")
    pki = pki_dir(cluster)
    member = pki / "hosts" / "k8s-1"
    client, peer = f"https://127.0.0.1:{_free_port()}", f"https://127.0.0.1:{_free_port()}"
    args = [
        "--name",
        "k8s-1",
        "--data-dir",
        str(data / "d"),
        "--listen-client-urls",
        client,
        "--advertise-client-urls",
        client,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        f"k8s-1={peer}",
        "--cert-file",
        str(member / "etcd-server.crt"),
        "--key-file",
        str(member / "etcd-server.key"),
        "--client-cert-auth",
        "--trusted-ca-file",
        str(pki / "etcd/ca.crt"),
        "--peer-cert-file",
        str(member / "etcd-peer.crt"),
        "--peer-key-file",
        str(member / "etcd-peer.key"),
        "--peer-client-cert-auth",
        "--peer-trusted-ca-file",
        str(pki / "etcd/ca.crt"),
    ]
    with open(data / "etcd.log", "w") as log:
        proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=log)
    endpoint = client
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _etcdctl(cluster, endpoint, "apiserver-etcd-client").returncode == 0:
            break
        time.sleep(0.3)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=20)


def _etcdctl(cluster, endpoint: str, identity: str | None, *args: str) -> subprocess.CompletedProcess:
    pki = pki_dir(cluster)
    tls = ["--cacert", str(pki / "etcd/ca.crt")]
    if identity is not None:
        tls += ["--cert", str(pki / f"{identity}.crt"), "--key", str(pki / f"{identity}.key")]
    cmd = args or ("endpoint", "health")
    return run(
        "etcdctl",
        "--endpoints",
        endpoint,
        "--dial-timeout",
        "3s",
        "--command-timeout",
        "5s",
        *tls,
        *cmd,
        env={**os.environ, "ETCDCTL_API": "3"},
    )


def test_etcd_accepts_the_apiserver_etcd_client(cluster, etcd: str) -> None:
    result = _etcdctl(cluster, etcd, "apiserver-etcd-client")
    assert result.returncode == 0 and "is healthy" in result.stdout + result.stderr
    assert _etcdctl(cluster, etcd, "etcd/healthcheck-client", "put", "/kubefab/x", "1").returncode == 0


def test_etcd_refuses_a_certificate_from_another_ca(cluster, etcd: str) -> None:
    result = _etcdctl(cluster, etcd, "hosts/k8s-1/kubelet-client")
    assert result.returncode != 0
    assert "unhealthy" in result.stdout + result.stderr or "bad certificate" in result.stderr


def test_etcd_refuses_a_client_without_certificate(cluster, etcd: str) -> None:
    assert _etcdctl(cluster, etcd, None).returncode != 0
