"""The real Kubernetes control plane kubefab deploys on 3 lab hosts, seen as an operator and an attacker see it:
through the VIP with the bundle's own kubectl (the release the hosts run), the cluster's identities, etcd's
raw keys and the apiservers' audit logs. Disruptive checks restore what they stop."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from labkit import TIMINGS, Etcd, Kubectl, Lab, cli

from kubefab.pki.certs import Authority, Request, issue, new_ca
from kubefab.pki.keys import key_pem, new_key
from kubefab.playbooks import flagref, reference
from kubefab.playbooks.facts import VERSIONED_SERVICES
from kubefab.playbooks.lab.bundle import lab_stack
from kubefab.playbooks.model import Cluster

pytestmark = pytest.mark.lab
COMPONENT_UNITS = (*VERSIONED_SERVICES, "containerd")


def raw_get(cluster: Cluster, path: str, cert: tuple[Path, Path] | None = None) -> tuple[int, str]:
    """GET through the VIP, verifying the server against the cluster CA, with an optional client certificate."""
    tls = ssl.create_default_context(cafile=str(cluster.dir / "pki" / "ca.crt"))
    if cert:
        tls.load_cert_chain(*cert)
    conn = http.client.HTTPSConnection(str(cluster.endpoint_ip), cluster.endpoint_port, context=tls, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_server_version_through_the_vip_is_the_pinned_release(kubectl: Kubectl) -> None:
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == f"v{lab_stack().kubernetes}"
    assert version["clientVersion"]["gitVersion"] == f"v{lab_stack().kubernetes}"


def test_every_worker_registered_under_its_own_node_identity(cluster: Cluster, kubectl: Kubectl) -> None:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(h.name for h in cluster.workers)
    for node in nodes:
        assert node["status"]["nodeInfo"]["kubeletVersion"] == f"v{lab_stack().kubernetes}"
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == f"containerd://{lab_stack().containerd}"
    for h in cluster.workers:
        who = json.loads(kubectl("auth", "whoami", "-o", "json", kubeconfig=f"kubelet-{h.name}.conf").stdout)
        assert who["status"]["userInfo"]["username"] == f"system:node:{h.name}"
        assert "system:nodes" in who["status"]["userInfo"]["groups"]


def lease_holder(kubectl: Kubectl, name: str) -> str:
    lease = json.loads(kubectl("-n", "kube-system", "get", "lease", name, "-o", "json").stdout)
    return lease["spec"]["holderIdentity"].split("_")[0]


@pytest.mark.parametrize("component", ["kube-controller-manager", "kube-scheduler"])
def test_leader_election_lease_moves_when_its_holder_stops(
    lab: Lab, cluster: Cluster, kubectl: Kubectl, component: str
) -> None:
    holder = lease_holder(kubectl, component)
    assert holder in {h.name for h in cluster.control_plane}
    lab.run(holder, f"sudo systemctl stop {component}")
    start = time.monotonic()
    try:
        # A leader that stops cleanly releases the lease (an empty holder) before another takes it.
        while (now := lease_holder(kubectl, component)) in (holder, ""):
            assert time.monotonic() - start < 90, f"{component} lease still held by {holder!r} after 90 s"
            time.sleep(1)
        TIMINGS[f"{component} lease moved after its holder stopped"] = time.monotonic() - start
        assert now in {h.name for h in cluster.control_plane} - {holder}
    finally:
        lab.run(holder, f"sudo systemctl start {component}")


def test_anonymous_request_is_refused(cluster: Cluster) -> None:
    status, _ = raw_get(cluster, "/api/v1/namespaces")
    assert status == 401


def test_client_certificate_from_a_foreign_ca_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key, key = new_key("ecdsa-p256"), new_key("ecdsa-p256")
    foreign = Authority(new_ca("not-the-cluster-ca", ca_key, 1, now), ca_key)
    cert = issue(foreign, Request("kubernetes-admin", ("system:masters",)), key, 1, now)
    (tmp_path / "c.crt").write_bytes(cert.public_bytes(Encoding.PEM))
    (tmp_path / "c.key").write_bytes(key_pem(key))
    status, _ = raw_get(cluster, "/api/v1/namespaces", (tmp_path / "c.crt", tmp_path / "c.key"))
    assert status == 401
    # The same request with the cluster's own admin certificate is allowed: the refusal is about the CA.
    pki = cluster.dir / "pki"
    assert raw_get(cluster, "/api/v1/namespaces", (pki / "admin.crt", pki / "admin.key"))[0] == 200


def test_kubeconfig_for_a_user_authenticates_as_that_user_with_no_rights_until_granted(
    lab: Lab, cluster: Cluster, kubectl: Kubectl, tmp_path: Path
) -> None:
    out = tmp_path / "alice.conf"
    made, _ = cli(
        "kubeconfig",
        "--user",
        "alice",
        "--group",
        "kubefab:testers",
        "--hours",
        "1",
        "--out",
        str(out),
        "--inventory",
        str(lab.paths.inventory),
    )
    assert made.returncode == 0, made.stderr
    who = json.loads(kubectl("auth", "whoami", "-o", "json", kubeconfig=str(out)).stdout)["status"]["userInfo"]
    assert who["username"] == "alice" and "kubefab:testers" in who["groups"], who
    denied = kubectl("get", "nodes", kubeconfig=str(out), check=False)
    assert denied.returncode != 0 and 'User "alice" cannot list resource "nodes"' in denied.stderr, denied.stderr
    admin = tmp_path / "admin.conf"
    made, _ = cli("kubeconfig", "--out", str(admin), "--inventory", str(lab.paths.inventory))
    assert made.returncode == 0, made.stderr
    nodes = kubectl("get", "nodes", "-o", "name", kubeconfig=str(admin)).stdout.split()
    assert sorted(nodes) == sorted(f"node/{h.name}" for h in cluster.workers)


def test_a_kubelet_cannot_modify_another_node(cluster: Cluster, kubectl: Kubectl) -> None:
    first, second = (h.name for h in cluster.workers[:2])
    done = kubectl("label", "node", second, "kubefab-test=1", kubeconfig=f"kubelet-{first}.conf", check=False)
    assert done.returncode != 0 and "forbidden" in done.stderr.lower(), done.stderr
    # NodeRestriction allows a kubelet its own Node: the refusal above is about the other node.
    kubectl("label", "node", first, "kubefab-test=1", "--overwrite", kubeconfig=f"kubelet-{first}.conf")
    kubectl("label", "node", first, "kubefab-test-")


@pytest.mark.parametrize(
    ("kubeconfig", "allowed", "denied"),
    [
        (
            "scheduler.conf",
            ["create bindings", "create pods --subresource=binding", "watch pods", "get leases -n kube-system"],
            ["create pods", "get secrets", "delete nodes"],
        ),
        (
            "controller-manager.conf",
            ["create serviceaccounts/token -n kube-system", "get leases -n kube-system", "create events"],
            ["delete nodes", "create pods/exec"],
        ),
        (
            "kube-proxy.conf",
            ["list endpointslices.discovery.k8s.io", "watch services", "get nodes"],
            ["get secrets", "create pods", "delete services"],
        ),
    ],
)
def test_component_identities_have_exactly_their_rbac_roles(
    kubectl: Kubectl, kubeconfig: str, allowed: list[str], denied: list[str]
) -> None:
    for question, expected in [*((q, "yes") for q in allowed), *((q, "no") for q in denied)]:
        done = kubectl("auth", "can-i", *question.split(), kubeconfig=kubeconfig, server=True, check=False)
        assert done.stdout.strip() == expected, f"{kubeconfig}: can-i {question} -> {done.stdout} {done.stderr}"


def test_secrets_are_encrypted_in_etcd(cluster: Cluster, kubectl: Kubectl) -> None:
    name, plaintext = f"kubefab-{uuid.uuid4().hex[:8]}", f"plaintext-{uuid.uuid4().hex}"
    kubectl("create", "secret", "generic", name, f"--from-literal=value={plaintext}")
    try:
        client = Etcd(cluster.dir / "pki", [f"https://{h.address}:2379" for h in cluster.etcd_hosts])
        raw = client.raw(f"/registry/secrets/default/{name}")
        assert raw is not None and raw.startswith(b"k8s:enc:secretbox:v1:key1:"), raw[:40]
        assert plaintext.encode() not in raw
        # ... and the API still returns it decrypted.
        value = kubectl("get", "secret", name, "-o", "jsonpath={.data.value}").stdout
        assert (
            value and plaintext in subprocess.run(["base64", "-d"], input=value, capture_output=True, text=True).stdout
        )
    finally:
        kubectl("delete", "secret", name)


def test_the_serving_apiserver_audit_log_records_the_request(lab: Lab, cluster: Cluster, kubectl: Kubectl) -> None:
    name = f"kubefab-audit-{uuid.uuid4().hex[:8]}"
    kubectl("create", "configmap", name)
    kubectl("delete", "configmap", name)
    deadline = time.monotonic() + 30
    while True:
        found = {
            h.name: lab.run(h.name, f'sudo grep -c \'"name":"{name}"\' /var/log/kubernetes/audit.log || true')
            for h in cluster.control_plane
        }
        creates = {h: int(n) for h, n in found.items() if int(n)}
        if creates or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert creates, f"no apiserver audited {name}"
    host = next(iter(creates))
    lines = [
        json.loads(line)
        for line in lab.run(host, f'sudo grep \'"name":"{name}"\' /var/log/kubernetes/audit.log').splitlines()
    ]
    verbs = {e["verb"] for e in lines if e["stage"] == "ResponseComplete"}
    assert "create" in verbs or "delete" in verbs
    assert all(e["user"]["username"] == "kubernetes-admin" for e in lines)


def test_apiserver_reaches_every_kubelet_with_verified_certificates(cluster: Cluster, kubectl: Kubectl) -> None:
    for h in cluster.workers:
        assert kubectl("get", "--raw", f"/api/v1/nodes/{h.name}/proxy/healthz").stdout == "ok", h.name


def test_service_account_token_request_and_review(kubectl: Kubectl) -> None:
    token = kubectl("create", "token", "default", "--duration", "10m").stdout.strip()
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    status = json.loads(kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout)["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == "system:serviceaccount:default:default"
    forged = {**review, "spec": {"token": token[:-4] + "AAAA"}}
    status = json.loads(kubectl("create", "-o", "json", "-f", "-", input=json.dumps(forged)).stdout)["status"]
    assert not status.get("authenticated")


class Probe:
    """Counts API requests through the VIP that fail while something is down."""

    def __init__(self, cluster: Cluster) -> None:
        pki = cluster.dir / "pki"
        self.cluster, self.cert = cluster, (pki / "admin.crt", pki / "admin.key")
        self.ok = self.failed = 0

    def once(self) -> bool:
        try:
            good = raw_get(self.cluster, "/readyz", self.cert)[0] == 200
        except OSError:
            good = False
        self.ok += good
        self.failed += not good
        return good

    def run(self, seconds: float) -> Iterator[None]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.once()
            yield
            time.sleep(0.1)


def test_api_answers_through_the_vip_with_one_apiserver_stopped(lab: Lab, cluster: Cluster, kubectl: Kubectl) -> None:
    victim = cluster.control_plane[0].name
    lab.run(victim, "sudo systemctl stop kube-apiserver")
    try:
        probe = Probe(cluster)
        for _ in probe.run(15):
            pass
        TIMINGS["requests failed through the VIP, one apiserver stopped (of 15 s)"] = probe.failed
        print(f"one apiserver stopped: {probe.ok} ok, {probe.failed} failed")
        assert probe.ok > 20
        # Once HAProxy's health check has marked it down, no request fails.
        tail = Probe(cluster)
        for _ in tail.run(5):
            pass
        assert tail.failed == 0, f"{tail.failed} of {tail.ok + tail.failed} failed after the first 15 s"
        name = f"kubefab-{uuid.uuid4().hex[:8]}"
        kubectl("create", "configmap", name)
        kubectl("delete", "configmap", name)
    finally:
        lab.run(victim, "sudo systemctl start kube-apiserver")


def test_api_stays_writable_with_one_etcd_member_stopped(lab: Lab, cluster: Cluster, kubectl: Kubectl) -> None:
    victim = cluster.etcd_hosts[-1].name
    lab.run(victim, "sudo systemctl stop etcd")
    try:
        name = f"kubefab-{uuid.uuid4().hex[:8]}"
        kubectl("create", "configmap", name, "--from-literal=k=v")
        assert kubectl("get", "configmap", name, "-o", "jsonpath={.data.k}").stdout == "v"
        kubectl("delete", "configmap", name)
    finally:
        lab.run(victim, "sudo systemctl start etcd")


def deprecation_warnings(journal: str) -> list[str]:
    """Warning lines about something deprecated: klog's W-lines, etcd's and containerd's warn level."""
    warning = re.compile(r'^(W\d{4} |\{"level":"warn"|time="[^"]*" level=warn)')
    return [line for line in journal.splitlines() if warning.match(line) and re.search("deprecat", line, re.I)]


def test_deprecation_warning_filter_can_fail() -> None:
    assert deprecation_warnings('W1201 12:00:00.1 1 flags.go:64] "--foo" is deprecated\nI1201 deprecated') == [
        'W1201 12:00:00.1 1 flags.go:64] "--foo" is deprecated'
    ]


def test_no_component_warns_of_anything_deprecated_kubefab_renders(lab: Lab, cluster: Cluster) -> None:
    found = {}
    for h in cluster.hosts:
        for unit in COMPONENT_UNITS:
            journal = lab.run(h.name, f"sudo journalctl -u {unit} -o cat --no-pager || true")
            assert unit != "kube-apiserver" or h not in cluster.control_plane or journal, f"{h.name}: no {unit} log"
            if warnings := deprecation_warnings(journal):
                found[f"{h.name}/{unit}"] = warnings[:3]
    assert not found, found


def test_flag_references_match_the_binaries_the_lab_runs(bin_dir: Path) -> None:
    minor = lab_stack().minor
    for component in flagref.COMPONENTS:
        assert reference.parse_help(reference.help_of(bin_dir / component)) == flagref.valid_flags(component, minor), (
            f"{component}: playbooks/data/flags/{minor} is stale: run python3 -m playbooks.reference {minor}"
        )
