"""Images: the OCI archives kubefab writes and reads, which images a deploy needs, how nodes get them (import
or a private registry's mirrors), and the flannel and CoreDNS settings that go with them."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from kubefab.playbooks import bundle, oci
from kubefab.playbooks.bundle import BUILT, IMAGE, Entry, Manifest, image_path, manifest_images, sandbox_image
from kubefab.playbooks.components import images, node
from kubefab.playbooks.components.addons import AddonError, patch_flannel
from kubefab.playbooks.images import shared_libraries
from kubefab.playbooks.inputs import Inputs, stack_of
from kubefab.playbooks.inventory import validate_text
from kubefab.playbooks.model import Cluster
from kubefab.playbooks.registry import mirror_ref
from kubefab.playbooks.render import render

EXAMPLE = Path(__file__).parents[2] / "inventory" / "example.yaml"


def cluster(**changes) -> Cluster:
    data = yaml.safe_load(EXAMPLE.read_text()) | changes
    verdict = validate_text(yaml.safe_dump(data), EXAMPLE)
    assert verdict.ok, verdict.problems
    assert verdict.cluster is not None
    return verdict.cluster


def small_image(ref: str = "registry.k8s.io/pause:3.10.2") -> oci.Image:
    return oci.Image(
        ref,
        "amd64",
        (oci.LayerFile("/pause", b"\x7fELF fake program bytes"), oci.LayerFile("/bin/sh", link="busybox")),
        ("/pause",),
        "65535:65535",
    )


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("registry.k8s.io/coredns/coredns:v1.14.6", ("registry.k8s.io", "coredns/coredns", "v1.14.6")),
        ("ghcr.io/flannel-io/flannel:v0.28.4", ("ghcr.io", "flannel-io/flannel", "v0.28.4")),
        ("nginx:1.27", ("docker.io", "library/nginx", "1.27")),
        ("calico/node:v3.31.7", ("docker.io", "calico/node", "v3.31.7")),
        ("10.0.0.5:5000/pause:3.10.2", ("10.0.0.5:5000", "pause", "3.10.2")),
    ],
)
def test_references_split_into_registry_repository_and_tag(ref: str, parts: tuple[str, str, str]) -> None:
    assert oci.split_ref(ref) == parts


def test_a_reference_without_a_tag_is_refused() -> None:
    with pytest.raises(oci.ImageError, match="expected"):
        oci.split_ref("registry.example:5000/pause")


def test_archives_are_reproducible_and_read_back_whole(tmp_path: Path) -> None:
    first = oci.write_archive(small_image(), tmp_path / "a.tar")
    second = oci.write_archive(small_image(), tmp_path / "b.tar")
    assert first == second and (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    archive = oci.read_archive(tmp_path / "a.tar")
    assert archive.ref == "registry.k8s.io/pause:3.10.2" and archive.digest == first
    manifest = json.loads(archive.manifest)
    config = json.loads(archive.blobs[manifest["config"]["digest"]])
    assert config["config"]["Entrypoint"] == ["/pause"] and config["config"]["User"] == "65535:65535"
    layer = archive.blobs[manifest["layers"][0]["digest"]]
    assert config["rootfs"]["diff_ids"] == [oci.digest(gzip.decompress(layer))]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["pause"].mode == 0o755 and members["bin/sh"].linkname == "busybox" and members["bin"].isdir()
    # The digest is the content's: another tag names the same image, another program makes another one.
    assert oci.write_archive(small_image("registry.k8s.io/pause:3.10.1"), tmp_path / "c.tar") == first
    assert oci.read_archive(tmp_path / "c.tar").ref == "registry.k8s.io/pause:3.10.1"
    other = oci.Image("registry.k8s.io/pause:3.10.2", "amd64", (oci.LayerFile("/pause", b"other"),), ("/pause",))
    assert oci.write_archive(other, tmp_path / "d.tar") != first


def test_a_tampered_blob_is_refused(tmp_path: Path) -> None:
    oci.write_archive(small_image(), tmp_path / "a.tar")
    with tarfile.open(tmp_path / "a.tar") as src, tarfile.open(tmp_path / "bad.tar", "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name.startswith("blobs/") and b"Entrypoint" in data:
                data = data.replace(b"/pause", b"/evil!")
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    with pytest.raises(oci.ImageError, match="does not match its digest"):
        oci.read_archive(tmp_path / "bad.tar")


def test_a_skopeo_layout_becomes_an_archive_with_the_same_digest(tmp_path: Path) -> None:
    manifest, parts = oci.blobs(small_image())
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    for d, data in [(oci.digest(manifest), manifest), *parts]:
        (layout / "blobs" / "sha256" / d.removeprefix("sha256:")).write_bytes(data)
    (layout / "index.json").write_text(json.dumps({"manifests": [{"digest": oci.digest(manifest)}]}))
    digest = oci.layout_to_archive(layout, "registry.k8s.io/pause:3.10.2", "amd64", tmp_path / "x.tar")
    assert digest == oci.digest(manifest) == oci.read_archive(tmp_path / "x.tar").digest


def test_manifest_images_are_listed_once_in_order() -> None:
    text = (
        "      initContainers:\n      - name: a\n        image: ghcr.io/x/cni:v1\n"
        '      containers:\n      - image: "ghcr.io/x/d:v2"\n        name: d\n'
        "      - name: e\n        image: ghcr.io/x/cni:v1  # again\n"
    )
    assert manifest_images(text) == ["ghcr.io/x/cni:v1", "ghcr.io/x/d:v2"]


def test_the_sandbox_image_follows_the_registry() -> None:
    s = stack_of(cluster())
    assert sandbox_image(cluster(), s) == f"registry.k8s.io/pause:{s.pause}"
    with_url = cluster(registry={"url": "https://reg.internal:5000"})
    assert sandbox_image(with_url, s) == f"reg.internal:5000/pause:{s.pause}"
    assert sandbox_image(cluster(registry={"url": "https://r:5000", "pause_image": "r:5000/p:1"}), s) == "r:5000/p:1"
    assert (
        mirror_ref("reg.internal:5000", "registry.k8s.io/coredns/coredns:v1.14.6")
        == "reg.internal:5000/coredns/coredns:v1.14.6"
    )


@pytest.mark.parametrize("url", ["http://reg:5000", "reg:5000", "https://reg:5000/v2", "https://"])
def test_a_registry_url_must_be_https_host_and_port(url: str) -> None:
    data = yaml.safe_load(EXAMPLE.read_text()) | {"registry": {"url": url}}
    verdict = validate_text(yaml.safe_dump(data), EXAMPLE)
    assert not verdict.ok and any("registry.url" in str(p) for p in verdict.problems)


def test_the_registry_mirrors_every_upstream_and_is_trusted_by_the_cluster_ca() -> None:
    c = cluster(registry={"url": "https://reg.internal:5000", "mirrors": {"docker.io": ["https://dh.internal"]}})
    files = {f.path: f.content.decode() for f in node.registry_hosts(c)}
    for upstream in ("registry.k8s.io", "docker.io", "quay.io", "ghcr.io"):
        toml = files[f"/etc/containerd/certs.d/{upstream}/hosts.toml"]
        assert '[host."https://reg.internal:5000"]' in toml and 'ca = "/etc/kubernetes/pki/ca.crt"' in toml
    docker = files["/etc/containerd/certs.d/docker.io/hosts.toml"]
    assert docker.index("https://dh.internal") < docker.index("https://reg.internal:5000")  # the inventory's first
    assert 'server = "https://registry-1.docker.io"' in docker
    own = files["/etc/containerd/certs.d/reg.internal:5000/hosts.toml"]
    assert 'server = "https://reg.internal:5000"' in own and 'ca = "/etc/kubernetes/pki/ca.crt"' in own
    plain = cluster()  # mirrors only (the example's): no private registry, no CA
    assert [f.path for f in node.registry_hosts(plain)] == [
        f"/etc/containerd/certs.d/{r}/hosts.toml" for r in sorted(plain.registry.mirrors)
    ]
    assert all("ca =" not in f.content.decode() for f in node.registry_hosts(plain))


def with_bundle(tmp_path: Path, c: Cluster) -> tuple[Inputs, Path]:
    """A bundle holding the example cluster's images (as the manifest records them) and its flannel manifest."""
    s = stack_of(c)
    files = {}
    for ref in [s.pause_image, s.coredns_image]:
        path = image_path(ref, "amd64")
        files[path] = Entry(IMAGE, ref, path, "0" * 64, "test", BUILT, f"sha256:{'1' * 64}")
    c.bundle_dir.mkdir(parents=True)
    bundle.write_manifest(c.bundle_dir, Manifest("amd64", files))
    inputs = Inputs(cluster=c, stack=s, secrets=None, credentials={}, arch="amd64")  # type: ignore[arg-type]
    return inputs, c.bundle_dir


def test_each_node_imports_each_image_unless_containerd_holds_its_digest(tmp_path: Path) -> None:
    c = cluster(addons=["rbac", "coredns"], bundle=str(tmp_path / "b"))
    inputs, _ = with_bundle(tmp_path, c)
    plan = images.IMAGES.host_plan(inputs, c.workers[0])
    assert plan is not None
    assert [b.path for b in plan.binaries] == [
        f"/var/lib/kubefab/images/registry.k8s.io_pause_{inputs.stack.pause}.oci.tar",
        f"/var/lib/kubefab/images/registry.k8s.io_coredns_coredns_v{inputs.stack.coredns}.oci.tar",
    ]
    step = plan.steps[0]
    assert "name==registry.k8s.io/pause:" in step.unless and f"grep -qx sha256:{'1' * 64}" in step.unless
    assert step.run.startswith("/usr/local/bin/ctr --namespace k8s.io images import --platform linux/amd64 ")
    non_worker = [h for h in c.hosts if not h.has("worker")]
    assert all(images.IMAGES.host_plan(inputs, h) is None for h in non_worker)
    registry = cluster(addons=["rbac", "coredns"], registry={"url": "https://reg:5000"}, bundle=str(tmp_path / "b"))
    registry_inputs = Inputs(registry, inputs.stack, None, {}, "amd64")  # type: ignore[arg-type]
    assert images.IMAGES.host_plan(registry_inputs, c.workers[0]) is None


def test_verify_names_missing_images_with_the_commands_that_make_them(tmp_path: Path) -> None:
    c = cluster(addons=["rbac", "coredns"], bundle=str(tmp_path / "empty"))
    problems = bundle.verify_images(c, stack_of(c), "amd64", None)
    assert len(problems) == 1 and "2 image(s) missing" in problems[0]
    assert "kubefab bundle --from-source" in problems[0]


def test_flannel_gets_the_pod_cidr_the_backend_and_nftables_with_nftables_kube_proxy() -> None:
    conf = (
        '  net-conf.json: |\n    {\n      "Network": "10.244.0.0/16",\n      "EnableNFTables": false,\n'
        '      "Backend": {\n        "Type": "vxlan"\n      }\n    }\n'
        "        env:\n        - name: POD_NAME\n"
    )
    c = cluster(network={"pod_cidr": "10.200.0.0/16", "flannel_backend": "host-gw"}, kube_proxy_mode="nftables")
    out = patch_flannel(conf, c, "kube-flannel.yml")
    assert '"Network": "10.200.0.0/16"' in out and '"Type": "host-gw"' in out and '"EnableNFTables": true' in out
    assert (
        "        env:\n        - name: FLANNELD_IFACE\n          valueFrom:\n            fieldRef:\n"
        "              fieldPath: status.hostIP\n        - name: POD_NAME\n" in out
    )
    assert '"EnableNFTables": false' in patch_flannel(conf, cluster(), "kube-flannel.yml")
    with pytest.raises(AddonError, match="EnableNFTables"):
        patch_flannel(conf.replace('"EnableNFTables": false,\n', ""), c, "kube-flannel.yml")


@pytest.mark.parametrize(
    ("upstream", "forward"),
    [(None, "forward . /etc/resolv.conf"), (["10.0.0.2", "10.0.0.3"], "forward . 10.0.0.2 10.0.0.3"), ([], None)],
)
def test_coredns_forwards_where_the_inventory_says(upstream, forward) -> None:
    c = cluster(network={"upstream_dns": upstream})
    text = render("addons/coredns.yaml.j2", cluster=c, stack=stack_of(c)).decode()
    corefile = yaml.safe_load(next(d for d in text.split("---") if "Corefile" in d))["data"]["Corefile"]
    if forward:
        assert forward in corefile
    else:
        assert "forward" not in corefile
    assert f"kubernetes {c.network.domain} in-addr.arpa" in corefile


def test_ldd_output_gives_the_libraries_to_copy() -> None:
    out = (
        "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibnftables.so.1 => /lib/x86_64-linux-gnu/libnftables.so.1 (0x7f)\n"
        "\t/lib64/ld-linux-x86-64.so.2 (0x00007f96)\n"
    )
    assert shared_libraries(out) == ["/lib/x86_64-linux-gnu/libnftables.so.1", "/lib64/ld-linux-x86-64.so.2"]
