"""`kubefab certs.rotate-ca` on the deployed lab (all three CAs) under an API probe through the VIP: every host ends
trusting the new CAs alone, every component still talks (nodes Ready, kubelets reached for logs, etcd through its
new certificates, CoreDNS answering for a Service made after the rotation), a service-account token issued before
still works, and the old CAs' certificates are refused by the apiserver and by etcd. No request through the VIP may
fail on the way."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from labkit import FIGURES, TIMINGS, Etcd, Kubectl, Lab, cli, ready_nodes

from kubefab.pki import rotation
from kubefab.playbooks import dns
from kubefab.playbooks.lab.probe import api_probe
from kubefab.playbooks.model import Cluster

pytestmark = pytest.mark.lab
# Each CA file a host may hold, and the kind of host that holds it.
CA_FILES = {
    "/etc/kubernetes/pki/ca.crt": "ca.crt",
    "/etc/kubernetes/pki/etcd/ca.crt": "etcd/ca.crt",
    "/etc/kubernetes/pki/front-proxy-ca.crt": "front-proxy-ca.crt",
    "/etc/etcd/pki/ca.crt": "etcd/ca.crt",
}


def status(cluster: Cluster, path: str, ca: bytes, cert: Path | None = None, token: str | None = None) -> int:
    """The HTTP status of GET `path` through the VIP, trusting `ca`, as `cert` (its .key beside it) or `token`."""
    tls = ssl.create_default_context(cadata=ca.decode())
    if cert is not None:
        tls.load_cert_chain(cert, cert.with_suffix(".key"))
    conn = http.client.HTTPSConnection(str(cluster.api.vip), cluster.api.port, context=tls, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def keep(pki: Path, rel: str, into: Path) -> Path:
    """A copy of the pair pki/<rel>.crt/.key as it is now."""
    out = into / rel.replace("/", "-")
    for suffix in (".crt", ".key"):
        out.with_suffix(suffix).write_bytes((pki / f"{rel}{suffix}").read_bytes())
    return out.with_suffix(".crt")


def test_rotate_every_ca_with_no_failed_request_through_the_vip(
    lab: Lab, cluster: Cluster, kubectl: Kubectl, tmp_path: Path
) -> None:
    pki = cluster.dir / "pki"
    inventory = str(lab.paths.inventory)
    old = {rel: (pki / rel).read_bytes() for rel in set(CA_FILES.values())}
    old_admin = keep(pki, "admin", tmp_path)
    old_etcd_client = keep(pki, "etcd/healthcheck-client", tmp_path)
    token = kubectl("create", "token", "default", "-n", "default", "--duration=1h").stdout.strip()
    assert status(cluster, "/api", old["ca.crt"], token=token) == 200

    with api_probe(cluster) as probe:
        result, seconds = cli("certs.rotate-ca", "--inventory", inventory, timeout=1200)
    TIMINGS["certs.rotate-ca, 3 CAs, 3 hosts"] = seconds
    FIGURES["certs.rotate-ca: API requests (failed/sent)"] = f"{len(probe.failures)}/{probe.sent}"
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert not probe.failures, f"{len(probe.failures)} of {probe.sent} requests failed: {probe.failures[:10]}"

    new = {rel: (pki / rel).read_bytes() for rel in old}
    assert all(new[rel] != old[rel] for rel in old)
    assert not list(pki.glob("**/*.next.crt")) and not list(pki.glob("**/*.prev.crt"))
    retired = {x509.load_pem_x509_certificate(p.read_bytes()) for p in (pki / rotation.RETIRED).glob("*.crt")}
    assert {x509.load_pem_x509_certificate(pem) for pem in old.values()} <= retired, "the old CAs are kept"
    for h in cluster.hosts:
        for path, rel in CA_FILES.items():
            held = lab.run(h.name, f"sudo cat {path} 2>/dev/null || true")
            if held:
                assert held.encode().strip() == new[rel].strip(), f"{h.name}:{path} is not the new CA alone"

    # Every component talks through the new certificates.
    assert ready_nodes(kubectl) == {h.name for h in cluster.workers}
    kubectl("-n", "kube-system", "logs", "deployment/coredns", "--tail=1")  # apiserver -> kubelet
    root_ca = json.loads(kubectl("-n", "default", "get", "configmap", "kube-root-ca.crt", "-o", "json").stdout)
    assert root_ca["data"]["ca.crt"].strip() == new["ca.crt"].decode().strip(), "pods are given the new CA alone"
    etcd = Etcd(pki, [f"https://{h.address}:2379" for h in cluster.etcd_hosts])
    etcd.put("/kubefab-test/rotated", "yes")
    assert etcd.get("/kubefab-test/rotated", etcd.endpoints[-1]) == "yes"
    kubectl("create", "service", "clusterip", "rotated", "--tcp=80:80")
    try:
        name = f"rotated.default.svc.{cluster.network.domain}"
        worker = cluster.workers[0].name
        deadline = time.monotonic() + 60
        while not lab.run(worker, dns.query_command(name, str(cluster.network.dns_ip)) + " || true"):
            assert time.monotonic() < deadline, f"CoreDNS does not answer for {name} after the rotation"
            time.sleep(1)
    finally:
        kubectl("delete", "service", "rotated")

    # A token from before the rotation still works; the old CAs' certificates do not.
    assert status(cluster, "/api", new["ca.crt"], token=token) == 200
    assert status(cluster, "/api", new["ca.crt"], token=token[:-4] + "AAAA") == 401
    assert status(cluster, "/api", new["ca.crt"], cert=pki / "admin.crt") == 200
    assert status(cluster, "/api", new["ca.crt"], cert=old_admin) == 401
    with pytest.raises(ssl.SSLCertVerificationError):  # the apiserver's certificate is the new CA's
        status(cluster, "/api", old["ca.crt"], cert=old_admin)
    refused = Etcd(pki, etcd.endpoints)
    refused.tls.load_cert_chain(old_etcd_client, old_etcd_client.with_suffix(".key"))
    with pytest.raises(OSError):  # the TLS alert, or the connection closed on it
        refused.get("/kubefab-test/rotated")

    checked, _ = cli("certs.check", "--hosts", "--json", "--inventory", inventory)
    assert checked.returncode == 0, checked.stdout[-3000:]
    again, _ = cli("deploy", "--inventory", inventory)
    assert again.returncode == 0 and "0 change(s)" in again.stdout, again.stdout[-3000:]
