"""What `lab.up` hands to a deploy: a valid inventory for the hosts it started, and the lab bundle."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
import yaml
from labkit import Lab

from kubefab.playbooks import components, oci, source
from kubefab.playbooks.bundle import image_path
from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.bundle import ensure_bundle, lab_images, lab_stack, machine_arch

pytestmark = pytest.mark.lab


def manifest(lab: Lab) -> dict:
    return yaml.safe_load((lab.paths.bundle / "manifest.yaml").read_text())


def test_inventory_is_valid_and_describes_the_running_lab(lab: Lab) -> None:
    cluster = load(lab.paths.inventory)
    assert [(h.name, str(h.address)) for h in cluster.hosts] == [(h.name, h.ip) for h in lab.state.hosts]
    assert all(h.roles == ("etcd", "control_plane", "worker", "lb") for h in cluster.hosts[:2])
    assert cluster.hosts[2].roles == ("etcd", "control_plane", "worker")
    assert str(cluster.api.vip) == "10.77.0.100" and cluster.api.interface == "host0"
    assert cluster.ssh_for(cluster.hosts[0]).model_dump() == {
        "user": "kubefab",
        "port": 22,
        "key": str(lab.paths.key),
        "sudo": True,
        "known_hosts": str(lab.paths.known_hosts),
        "bastion": None,  # each lab host is reached directly
    }
    assert cluster.bundle_dir == lab.paths.bundle and cluster.dir == lab.paths.cluster
    # No overrides: the lab runs the versions the default minor pins.
    assert cluster.versions.model_dump(exclude_none=True) == {}
    assert cluster.kubernetes_version == lifecycle.kubernetes_version()


def test_bundle_holds_the_pinned_releases_each_with_its_checksum_and_origin(lab: Lab) -> None:
    m = manifest(lab)
    files = {f["path"]: f for f in m["files"]}
    for r in components.releases(None, lab_stack(), machine_arch()):
        f = files[r.bundle_path]
        assert (f["component"], f["version"]) == (r.component, r.version)
        assert hashlib.sha256((lab.paths.bundle / f["path"]).read_bytes()).hexdigest() == f["sha256"], f["path"]
        # Offline here: every file was built from its pinned Go module, and the manifest says so.
        assert f["origin"] == "source" and f"@v{r.version} (h1:" in f["source"], f


def test_bundle_holds_the_images_the_lab_runs_with_their_digests(lab: Lab) -> None:
    files = {f["path"]: f for f in manifest(lab)["files"]}
    refs = lab_images(lab_stack(), lab.paths.bundle)
    assert {lab_stack().pause_image, lab_stack().coredns_image} < set(refs)
    assert any("flannel-io/flannel:" in r for r in refs) and any("flannel-cni-plugin" in r for r in refs)
    for ref in refs:
        f = files[image_path(ref, machine_arch())]
        archive = oci.read_archive(lab.paths.bundle / f["path"])  # every blob checked against its digest
        assert (f["component"], f["version"], archive.ref, archive.digest) == ("image", ref, ref, f["digest"])
        assert f["origin"] == "source" and "built from source" in f["source"], f
        config = json.loads(archive.blobs[json.loads(archive.manifest)["config"]["digest"]])
        assert config["architecture"] == machine_arch() and config["config"]["Entrypoint"]


def members(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def test_release_archives_are_laid_out_as_upstream_ships_them(lab: Lab) -> None:
    paths = {f["component"]: lab.paths.bundle / f["path"] for f in manifest(lab)["files"]}
    etcd_top = paths["etcd"].name.removesuffix(".tar.gz")
    assert {f"{etcd_top}/etcd", f"{etcd_top}/etcdctl"} <= set(members(paths["etcd"]))
    assert {"bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"} <= set(members(paths["containerd"]))
    assert {"./bridge", "./host-local", "./loopback", "./portmap"} <= set(members(paths["cni_plugins"]))
    server_bin = {
        f"kubernetes/server/bin/{n}"
        for n in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl")
    }
    assert server_bin <= set(members(paths["kubernetes_server"]))
    assert paths["runc"].read_bytes()[:4] == b"\x7fELF"


def test_bundle_is_reused_while_its_inputs_are_unchanged(lab: Lab) -> None:
    before = {p: p.stat().st_mtime_ns for p in lab.paths.bundle.rglob("*") if p.is_file()}
    logged: list[str] = []
    ensure_bundle(lab.paths.bundle, source.cache_dir(), log=logged.append)
    assert logged == [], "a second bundle run built something"
    assert {p: p.stat().st_mtime_ns for p in lab.paths.bundle.rglob("*") if p.is_file()} == before
