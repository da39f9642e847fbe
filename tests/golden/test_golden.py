"""Every rendered file of every host of inventory/example.yaml, compared byte for byte with the checked-in
tree under tests/golden/example/. `pytest tests/golden --update-golden` rewrites it; the diff in review
shows exactly what a template change does to each host.

Certificates, keys and kubeconfigs are generated fresh for every run, so their content is not compared;
their paths, modes and owners are (in plans/<host>.yaml). Secrets come from fixtures/secrets.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from kubefab.playbooks import tree
from kubefab.playbooks.clusterdir import ensure_inputs
from kubefab.playbooks.components import host_plans
from kubefab.playbooks.components.addons import manifests
from kubefab.playbooks.inventory import load
from kubefab.playbooks.versions import cni_release

HERE = Path(__file__).parent
EXPECTED = HERE / "example"
EXAMPLE = HERE.parents[1] / "inventory" / "example.yaml"
GENERATED = ("/etc/kubernetes/pki/", "/etc/etcd/pki/", "/etc/haproxy/kubefab-healthcheck.pem")


def generated(rel: str) -> bool:
    """Files whose content is freshly generated PKI (not comparable across runs)."""
    path = "/" + rel.split("/", 1)[1]
    return path.startswith(GENERATED) or (path.startswith("/etc/kubernetes/") and path.endswith(".conf"))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("golden")
    data = yaml.safe_load(EXAMPLE.read_text())
    data |= {"cluster_dir": str(tmp / "cluster"), "bundle": str(tmp / "bundle")}
    (tmp / "cluster").mkdir(mode=0o700)
    shutil.copy(HERE / "fixtures" / "secrets.yaml", tmp / "cluster" / "secrets.yaml")
    (tmp / "inventory.yaml").write_text(yaml.safe_dump(data))
    cluster = load(tmp / "inventory.yaml")
    inputs = ensure_inputs(cluster)
    cni = tmp / "bundle" / cni_release(cluster.cni, inputs.stack).bundle_path
    cni.parent.mkdir(parents=True)
    shutil.copy(HERE / "fixtures" / "calico.yaml", cni)
    out = tmp / "out"
    tree.write(out, {h.name: host_plans(inputs, h) for h in cluster.hosts}, manifests(inputs, cluster.bundle_dir))
    return out


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != tree.MARKER and not generated(str(p.relative_to(root)))
    }


def test_rendered_tree_matches_golden(rendered: Path, request: pytest.FixtureRequest) -> None:
    actual = files(rendered)
    if request.config.getoption("--update-golden"):
        shutil.rmtree(EXPECTED, ignore_errors=True)
        for rel, content in actual.items():
            (EXPECTED / rel).parent.mkdir(parents=True, exist_ok=True)
            (EXPECTED / rel).write_bytes(content)
    expected = files(EXPECTED)
    assert sorted(actual) == sorted(expected), "files added or removed: run pytest tests/golden --update-golden"
    changed = [rel for rel in actual if actual[rel] != expected[rel]]
    assert not changed, f"rendered files differ from tests/golden/example: {changed}"


def test_generated_files_are_listed_in_the_manifests(rendered: Path) -> None:
    """The PKI files left out of the comparison are still planned, with their modes."""
    plan = yaml.safe_load((rendered / "plans" / "k8s-1.yaml").read_text())
    planned = {f["path"]: f["mode"] for f in plan["certificates"]["files"]}
    assert planned["/etc/kubernetes/pki/ca.key"] == "0600"
    assert planned["/etc/kubernetes/pki/apiserver.crt"] == "0600"  # CIS 1.1.20: certificates too
    assert planned["/etc/kubernetes/admin.conf"] == "0600"
    for rel in planned:
        assert (rendered / "k8s-1" / rel.lstrip("/")).exists()
