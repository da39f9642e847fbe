"""The private-registry way of delivering images (the book's 2.4) on the lab: a real registry (Debian's
docker-registry) on lab-1 with a certificate from the cluster's CA, filled by `kubefab images.push`; a deploy
with `registry.url` makes it every upstream's mirror in containerd's hosts.toml and the sandbox image's home,
and containerd pulls through it an image no node has (docker.io/... with no route out). Afterwards the
original inventory is deployed again."""

from __future__ import annotations

import datetime as dt
import gzip
import http.client
import io
import json
import os
import ssl
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from labkit import Kubectl, Lab, cli

from kubefab.pki.certs import Authority, Request, issue
from kubefab.pki.keys import key_pem, load_key, new_key
from kubefab.playbooks import bundle, oci
from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab.bundle import lab_stack, machine_arch
from kubefab.playbooks.model import Cluster
from kubefab.playbooks.registry import mirror_ref

pytestmark = pytest.mark.lab
PORT = 5000
CONFIG = """version: 0.1
log: {level: info}
storage: {filesystem: {rootdirectory: /var/lib/docker-registry}, delete: {enabled: true}}
http:
  addr: :5000
  tls: {certificate: /etc/docker/registry/tls.crt, key: /etc/docker/registry/tls.key}
"""


@pytest.fixture(scope="module")
def registry(lab: Lab, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """docker-registry on the first host, serving TLS with a certificate the cluster's CA issued; its URL."""
    host = cluster.workers[0]
    pki = cluster.dir / "pki"
    ca = Authority(
        x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes()), load_key((pki / "ca.key").read_bytes())
    )
    key = new_key("ecdsa-p256")
    cert = issue(
        ca,
        Request(host.name, dns_names=(host.name,), ip_addresses=(host.address,), usages=("server",)),
        key,
        30,
        dt.datetime.now(dt.UTC),
    )
    local = tmp_path_factory.mktemp("registry")
    for name, data in (
        ("tls.crt", cert.public_bytes(Encoding.PEM)),
        ("tls.key", key_pem(key)),
        ("config.yml", CONFIG.encode()),
    ):
        (local / name).write_bytes(data)
        lab.connections[host.name].put(str(local / name), f"/tmp/{name}")
    lab.run(
        host.name,
        "sudo install -o root -g docker-registry -m 0640 /tmp/tls.crt /tmp/tls.key /tmp/config.yml "
        "/etc/docker/registry/ && sudo systemctl restart docker-registry",
    )
    url = f"https://{host.address}:{PORT}"
    deadline = time.monotonic() + 30
    while registry_get(cluster, url, "/v2/")[0] != 200:
        assert time.monotonic() < deadline, "docker-registry did not answer on /v2/ within 30 s"
        time.sleep(0.5)
    yield url
    lab.run(host.name, "sudo systemctl stop docker-registry")


def registry_get(cluster: Cluster, url: str, path: str) -> tuple[int, dict[str, str]]:
    """GET on the registry from this machine, verifying it against the cluster CA."""
    tls = ssl.create_default_context(cafile=str(cluster.dir / "pki" / "ca.crt"))
    host, port = url.removeprefix("https://").split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=tls, timeout=5)
    try:
        conn.request("GET", path, headers={"Accept": oci.MANIFEST})
        response = conn.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    except OSError:
        return 0, {}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def with_registry(lab: Lab, cluster: Cluster, registry: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab inventory with `registry.url` set (a copy: the lab's own file stays as it was)."""
    doc = yaml.safe_load(lab.paths.inventory.read_text())
    doc["registry"] = {"url": registry}
    path = tmp_path_factory.mktemp("inventory") / "lab-registry.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def pushed(with_registry: Path) -> str:
    result, _ = cli("images.push", "--inventory", str(with_registry))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def deployed(lab: Lab, cluster: Cluster, kubectl: Kubectl, with_registry: Path, pushed: str) -> Iterator[Cluster]:
    result, _ = cli("deploy", "--inventory", str(with_registry))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    yield load(with_registry)
    kubectl("delete", "deployment/mirrored", "--ignore-not-found")
    result, _ = cli("deploy", "--inventory", str(lab.paths.inventory))  # back to the air-gapped setup
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_push_puts_every_bundle_image_in_the_registry_with_its_digest(
    cluster: Cluster, registry: str, pushed: str
) -> None:
    manifest = bundle.read_manifest(cluster.bundle_dir)
    assert manifest is not None
    refs = bundle.required_images(cluster, lab_stack())
    assert len(refs) >= 4  # pause, CoreDNS, flannel and its CNI plugin
    for ref in refs:
        _, name, tag = oci.split_ref(ref)
        status, headers = registry_get(cluster, registry, f"/v2/{name}/manifests/{tag}")
        assert status == 200, ref
        assert headers["Docker-Content-Digest"] == manifest.files[bundle.image_path(ref, machine_arch())].digest


def test_saving_from_a_registry_gives_back_the_same_image(
    cluster: Cluster, registry: str, pushed: str, tmp_path: Path
) -> None:
    """`kubefab bundle`'s save path (skopeo, as for operators with internet), against the lab's registry."""
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_bytes((cluster.dir / "pki" / "ca.crt").read_bytes())
    pause = lab_stack().pause_image
    digest = bundle.save_image(
        mirror_ref(registry.removeprefix("https://"), pause),
        machine_arch(),
        tmp_path / "pause.oci.tar",
        tmp_path / "certs",
    )
    manifest = bundle.read_manifest(cluster.bundle_dir)
    assert manifest is not None
    assert digest == manifest.files[bundle.image_path(pause, machine_arch())].digest
    assert oci.read_archive(tmp_path / "pause.oci.tar").digest == digest


def test_deploy_makes_the_registry_every_upstreams_mirror_and_the_sandboxes_source(lab: Lab, deployed: Cluster) -> None:
    host = deployed.registry.host
    for h in deployed.workers:
        for upstream in ("registry.k8s.io", "docker.io", "quay.io", "ghcr.io"):
            toml = lab.run(h.name, f"sudo cat /etc/containerd/certs.d/{upstream}/hosts.toml")
            assert f'[host."{deployed.registry.url}"]' in toml and 'ca = "/etc/kubernetes/pki/ca.crt"' in toml
        config = lab.run(h.name, "sudo cat /etc/containerd/config.toml")
        assert f'sandbox = "{host}/pause:{lab_stack().pause}"' in config


def test_containerd_pulls_an_image_no_node_has_through_the_mirror(
    lab: Lab, deployed: Cluster, kubectl: Kubectl, tmp_path: Path
) -> None:
    # An image only the registry holds, under a Docker Hub name: the lab has no route to Docker Hub.
    source = tmp_path / "mirrored.oci.tar"
    oci.write_archive(
        oci.Image(
            "docker.io/kubefab/mirrored:1",
            machine_arch(),
            (oci.LayerFile("/pause", pause_binary(deployed)),),
            ("/pause",),
            "65535:65535",
        ),
        source,
    )
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_bytes((deployed.dir / "pki" / "ca.crt").read_bytes())
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-cert-dir",
            str(tmp_path / "certs"),
            f"oci-archive:{source}",
            f"docker://{deployed.registry.host}/kubefab/mirrored:1",
        ],
        check=True,
        env=os.environ,
    )
    kubectl("create", "deployment", "mirrored", "--image=docker.io/kubefab/mirrored:1", "--replicas=3")
    kubectl("rollout", "status", "deployment/mirrored", "--timeout=180s", timeout=200)
    registry_host = deployed.workers[0].name
    log = lab.run(registry_host, "sudo journalctl -u docker-registry --no-pager -o cat")
    assert "/v2/kubefab/mirrored/manifests/1?ns=docker.io" in log  # asked for as docker.io's mirror
    assert f"/v2/pause/manifests/{lab_stack().pause}" in log  # the new pods' sandboxes came from it too


def pause_binary(cluster: Cluster) -> bytes:
    """The bundle's pause program (a tiny static binary), to make a runnable image no node holds."""
    manifest = bundle.read_manifest(cluster.bundle_dir)
    assert manifest is not None
    archive = oci.read_archive(cluster.bundle_dir / bundle.image_path(lab_stack().pause_image, machine_arch()))
    layer = json.loads(archive.manifest)["layers"][0]["digest"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive.blobs[layer]))) as tar:
        member = tar.extractfile("pause")
        assert member is not None
        return member.read()
