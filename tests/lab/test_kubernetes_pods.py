"""Pods on 3 lab hosts after a full `kubefab deploy` (every phase, add-ons included): nodes Ready, flannel on
every node, CoreDNS spread and answering, and an application (tests/lab/app, built here into a one-layer
image and imported into containerd on every node the air-gapped way) reached by its Service name, its
ClusterIP, its NodePort on every node and pod to pod across nodes; logs and exec through the kubelets; a
second deploy changes nothing; a rebooted node comes back Ready with its pods."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

import labapp
import pytest
from labapp import APP_IMAGE
from labkit import TIMINGS, Kubectl, Lab, cli

from kubefab.playbooks import dns
from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.access import connect
from kubefab.playbooks.model import Cluster

pytestmark = pytest.mark.lab
NODE_PORT = 30080


def app_manifest(image: str, name: str = "web") -> str:
    """3 replicas, one per node, behind a ClusterIP Service and a NodePort one; a client pod to run from."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - {{topologyKey: kubernetes.io/hostname, labelSelector: {{matchLabels: {{app: {name}}}}}}}
      containers:
        - name: app
          image: {image}
          args: [serve, ":8080"]
          ports: [{{containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 2}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}-np}}
spec:
  type: NodePort
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080, nodePort: {NODE_PORT}}}]
"""


def client_manifest(image: str, node: str) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: {node}
  containers:
    - {{name: client, image: {image}, args: [serve, ":9090"]}}
"""


@pytest.fixture(scope="module")
def app_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return labapp.build_archive(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def app(lab: Lab, cluster: Cluster, kubectl: Kubectl, app_archive: Path) -> Iterator[dict]:
    """The application running, imported on every node as an operator without a registry would."""
    labapp.import_archive(lab.connections, [h.name for h in cluster.workers], app_archive)
    kubectl("apply", "-f", "-", input=app_manifest(APP_IMAGE))
    kubectl("apply", "-f", "-", input=client_manifest(APP_IMAGE, cluster.workers[0].name))
    kubectl("rollout", "status", "deployment/web", "--timeout=180s", timeout=200)
    kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=120s", timeout=130)
    for service in ("web", "web-np"):
        wait_for_endpoints(lab, kubectl, service, 3)
    yield {"pods": pods(kubectl, "app=web")}
    kubectl("delete", "pod/client", "deployment/web", "service/web", "service/web-np", "--wait=false")


def wait_for_endpoints(lab: Lab, kubectl: Kubectl, service: str, count: int, timeout: float = 90) -> None:
    """Ready pods are routed to once the EndpointSlice controller lists them: after apiservers restarted (an
    earlier module's deploys) the controller-manager may still be taking its lease back."""
    start = time.monotonic()
    while True:
        slices = json.loads(
            kubectl("get", "endpointslices", "-l", f"kubernetes.io/service-name={service}", "-o", "json").stdout
        )["items"]
        ready = [e for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")]
        if len(ready) >= count:
            TIMINGS.setdefault(f"endpoints of {service} listed", time.monotonic() - start)
            return
        if time.monotonic() - start > timeout:
            report = endpoints_report(lab, kubectl, slices)
            pytest.fail(f"{service}: {len(ready)} ready endpoints after {timeout} s\n{report}")
        time.sleep(1)


def endpoints_report(lab: Lab, kubectl: Kubectl, slices: list[dict]) -> str:
    """What the EndpointSlice controller shows and who runs it: the slices, the pods, the controller-manager's
    lease holder and that holder's last log lines (a controller whose watch stalled shows here)."""
    lease = kubectl("-n", "kube-system", "get", "lease", "kube-controller-manager", "-o", "json", check=False)
    holder = json.loads(lease.stdout or "{}").get("spec", {}).get("holderIdentity", "?")  # no stdout on a failure
    pods_now = kubectl("get", "pods", "-o", "wide", check=False).stdout
    services = kubectl("get", "services", "-o", "wide", check=False).stdout
    host = holder.split("_")[0]
    logs = (
        lab.run(host, "sudo journalctl -u kube-controller-manager --no-pager -n 40 -o short-precise")
        if host in lab.connections
        else ""
    )
    return (
        f"slices: {json.dumps(slices)[:1500]}\npods:\n{pods_now}\nservices:\n{services}\n"
        f"controller-manager lease holder: {holder}\n{logs}"
    )


def pods(kubectl: Kubectl, selector: str) -> list[dict]:
    return json.loads(kubectl("get", "pods", "-l", selector, "-o", "json").stdout)["items"]


def in_client(kubectl: Kubectl, *args: str) -> str:
    return kubectl("exec", "client", "--", "/labapp", *args).stdout


def coredns_replicas(lab: Lab, cluster: Cluster, kubectl: Kubectl, name: str) -> str:
    """What each CoreDNS replica answers for `name` when asked directly, with its last log lines: a lookup
    through the Service address only says that the replica it reached did not answer."""
    listed = json.loads(kubectl("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "json").stdout)
    connection = lab.connections[cluster.hosts[0].name]
    report = []
    for pod in listed["items"]:
        pod_name, ip = pod["metadata"]["name"], pod["status"].get("podIP", "")
        asked = connection.run(dns.query_command(name, ip), hide=True, warn=True, in_stream=False)
        logs = kubectl("-n", "kube-system", "logs", pod_name, "--tail=15", check=False)
        report.append(
            f"{pod_name} ({ip}, {pod['spec'].get('nodeName')}, {pod['status']['phase']}): "
            f"{(asked.stdout + asked.stderr).strip()[-300:]}\n{logs.stdout[-1500:]}{logs.stderr[-300:]}"
        )
    return "\n".join(report)


def test_every_node_ready_with_flannel_on_each_and_coredns_spread(cluster: Cluster, kubectl: Kubectl) -> None:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(h.name for h in cluster.workers)
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
    ds = json.loads(kubectl("-n", "kube-flannel", "get", "ds", "kube-flannel-ds", "-o", "json").stdout)["status"]
    assert ds["numberReady"] == ds["desiredNumberScheduled"] == len(cluster.workers)
    dns = [
        p
        for p in json.loads(kubectl("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "json").stdout)[
            "items"
        ]
        if p["status"]["phase"] == "Running"
    ]
    assert len(dns) == 2 and len({p["spec"]["nodeName"] for p in dns}) == 2  # replicas on distinct nodes


def resolved(lab: Lab, cluster: Cluster, kubectl: Kubectl, name: str, timeout: float = 60) -> list[str]:
    """The addresses a pod gets for `name` from CoreDNS's Service address. A replica answers for a Service once
    its watch has delivered it, which can lag behind the Service's creation (after restarts of the control plane
    it lagged for more than a minute: tests/lab/conftest.py, PODS_MODULE): the answer is awaited, the wait is
    reported, and a timeout shows what each replica answers."""
    start = time.monotonic()
    while True:
        got = kubectl("exec", "client", "--", "/labapp", "resolve", name, str(cluster.network.dns_ip), check=False)
        if got.returncode == 0:
            TIMINGS.setdefault(f"CoreDNS answered for {name.split('.')[0]} after", time.monotonic() - start)
            return got.stdout.split()
        if time.monotonic() - start > timeout:
            pytest.fail(f"{name}: {got.stderr} for {timeout} s\n{coredns_replicas(lab, cluster, kubectl, name)}")
        time.sleep(1)


def test_service_name_resolves_through_coredns_from_a_pod(
    lab: Lab, cluster: Cluster, kubectl: Kubectl, app: dict
) -> None:
    cluster_ip = json.loads(kubectl("get", "service", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    # the book's `dig nginx-demo.default.svc.cluster.local @<dns ip>`
    assert resolved(lab, cluster, kubectl, f"web.default.svc.{cluster.network.domain}") == [cluster_ip]
    kubernetes = resolved(lab, cluster, kubectl, f"kubernetes.default.svc.{cluster.network.domain}")
    assert kubernetes == [str(cluster.network.kubernetes_service_ip)]


def test_http_to_service_name_clusterip_and_nodeport_on_every_node(
    lab: Lab, cluster: Cluster, kubectl: Kubectl, app: dict
) -> None:
    cluster_ip = json.loads(kubectl("get", "service", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    names = {p["metadata"]["name"] for p in app["pods"]}
    # the short name through the pod's search path (its resolv.conf points at CoreDNS), then the ClusterIP
    for url in ("http://web/", f"http://web.default.svc.{cluster.network.domain}/", f"http://{cluster_ip}/"):
        got = kubectl("exec", "client", "--", "/labapp", "get", url, check=False)
        if got.returncode:
            replicas = coredns_replicas(lab, cluster, kubectl, f"web.default.svc.{cluster.network.domain}")
            pytest.fail(f"{url}: {got.stderr}\n{replicas}")
        assert got.stdout.split()[0] in names
    for h in cluster.workers:  # the NodePort from outside the cluster (this machine), on every node
        conn = http.client.HTTPConnection(str(h.address), NODE_PORT, timeout=5)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200 and response.read().decode().split()[0] in names, h.name
        finally:
            conn.close()


def test_pod_to_pod_traffic_crosses_nodes(cluster: Cluster, kubectl: Kubectl, app: dict) -> None:
    client_node = cluster.workers[0].name
    others = [p for p in app["pods"] if p["spec"]["nodeName"] != client_node]
    assert len(others) == len(cluster.workers) - 1
    for pod in others:
        answer = in_client(kubectl, "get", f"http://{pod['status']['podIP']}:8080/").split()
        assert answer[0] == pod["metadata"]["name"]
        assert answer[1].startswith(
            json.loads(kubectl("get", "pod", "client", "-o", "json").stdout)["status"]["podIP"] + ":"
        )  # no NAT between pods


def test_logs_and_exec_go_through_the_kubelets(kubectl: Kubectl, app: dict) -> None:
    pod = app["pods"][0]["metadata"]["name"]
    marker = f"/probe-{time.monotonic_ns()}"
    ip = app["pods"][0]["status"]["podIP"]
    in_client(kubectl, "get", f"http://{ip}:8080{marker}")
    assert f"request GET {marker}" in kubectl("logs", pod).stdout
    assert kubectl("exec", pod, "--", "/labapp", "get", "http://127.0.0.1:8080/").stdout.startswith(pod)


def test_second_deploy_changes_nothing_images_included(lab: Lab, cluster: Cluster, app: dict) -> None:
    result, seconds = cli("deploy", "--inventory", str(lab.paths.inventory))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 change(s)" in result.stdout, result.stdout[-3000:]
    TIMINGS["deploy with pods, 3 hosts, no-op run"] = seconds


def test_rebooted_node_comes_back_ready_with_its_pods(lab: Lab, cluster: Cluster, kubectl: Kubectl, app: dict) -> None:
    node = cluster.workers[-1].name
    # Each pod's restart count: the API keeps showing the pods as they were until the rebooted kubelet reports.
    before = {
        p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
        for p in pods(kubectl, "app=web")
        if p["spec"]["nodeName"] == node
    }
    lab.connections[node].close()
    start = time.monotonic()
    lab.state = lifecycle.reboot(node, lab.paths)
    lab.connections[node] = connect(lab.paths, lab.state.host(node))
    kubectl("wait", "--for=condition=Ready", f"node/{node}", "--timeout=180s", timeout=190)
    deadline = time.monotonic() + 180
    while True:  # the same pods, restarted in place by the node's kubelet (not rescheduled by kubefab)
        mine = [p for p in pods(kubectl, "app=web") if p["spec"]["nodeName"] == node]
        ready = [
            p
            for p in mine
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
            and p["status"]["containerStatuses"][0]["restartCount"] > before.get(p["metadata"]["name"], 1 << 30)
        ]
        if ready and {p["metadata"]["name"] for p in ready} == set(before):
            break
        assert time.monotonic() < deadline, f"{node}: pods {mine} not restarted and Ready 180 s after the reboot"
        time.sleep(2)
    TIMINGS["reboot of a node to its pods Ready"] = time.monotonic() - start
    answer = in_client(kubectl, "get", f"http://{ready[0]['status']['podIP']}:8080/").split()
    assert answer[0] in before
