"""CA rotation in the cluster directory (pki.rotation, playbooks.ca_rotation): each step's files, what hosts and
kubeconfigs are given at each step, the leaves reissued exactly when the CA changes, a crash inside a step, the
identity check during a rotation, and the choice of CAs. The lab module test_kubernetes_ca_rotation rolls it out."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kubefab.pki import certs, keys, rotation
from kubefab.pki.profiles import REMOTE_PKI, authorities
from kubefab.pki.store import assess, ensure, pki_dir
from kubefab.playbooks import ca_rotation, identity
from kubefab.playbooks.clusterdir import prepare
from kubefab.playbooks.components import certificates
from kubefab.playbooks.facts import parse
from kubefab.playbooks.inventory import load
from kubefab.playbooks.model import Cluster
from tests.conftest import EXAMPLE


def cluster(where: Path, **extra: object) -> Cluster:
    data = yaml.safe_load(EXAMPLE.read_text()) | {"cluster_dir": str(where / "cluster"), **extra}
    where.mkdir(parents=True, exist_ok=True)
    (where / "cluster.yaml").write_text(yaml.safe_dump(data))
    c = load(where / "cluster.yaml")
    ensure(c)
    return c


def kubernetes_ca(c: Cluster):
    return next(ca for ca in authorities(c) if ca.name == "kubernetes")


def pems(data: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data)


def ca_cert(c: Cluster, suffix: str = "") -> x509.Certificate:
    return x509.load_pem_x509_certificate((pki_dir(c) / f"ca{suffix}.crt").read_bytes())


def delivered(c: Cluster, host_name: str) -> dict[str, bytes]:
    inputs = prepare(c).inputs
    host = next(h for h in c.hosts if h.name == host_name)
    return {f.path: f.content for f in certificates.plan([], inputs, host).files}


def admin_ca(c: Cluster) -> list[x509.Certificate]:
    conf = yaml.safe_load((c.dir / "kubeconfig" / "admin.conf").read_text())
    return pems(base64.b64decode(conf["clusters"][0]["cluster"]["certificate-authority-data"]))


def test_three_steps_trust_both_then_reissue_from_the_new_then_retire_the_old(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    ca = kubernetes_ca(c)
    old = ca_cert(c)
    apiserver_before = (pki_dir(c) / "apiserver.crt").read_bytes()
    apiserver_key = (pki_dir(c) / "apiserver.key").read_bytes()

    assert rotation.stage(c, ca) == "idle"
    assert ca_rotation.advance(c, [ca], "idle") == "trust"
    new = ca_cert(c, ".next")
    assert new != old and certs.is_ca(new) and new.subject == old.subject
    assert oct(os.stat(pki_dir(c) / "ca.next.key").st_mode & 0o777) == "0o600"
    rows = ensure(c)
    assert not [r for r in rows if r.action.startswith("reissued")], "leaves stay with the old CA while trusting"
    host = delivered(c, "k8s-1")
    assert pems(host[f"{REMOTE_PKI}/ca.crt"]) == [old, new]
    assert pems(host[ca.signing]) == [old], "the signer gets the certificate of the key it holds, alone"
    assert admin_ca(c) == [old, new]

    assert ca_rotation.advance(c, [ca], "trust") == "reissue"
    assert ca_cert(c) == new and ca_cert(c, ".prev") == old
    assert keys.matches(new, keys.load_key((pki_dir(c) / "ca.key").read_bytes()))
    retired = pki_dir(c) / rotation.RETIRED / f"ca-{old.serial_number:x}"
    assert x509.load_pem_x509_certificate(retired.with_suffix(".crt").read_bytes()) == old
    assert keys.matches(old, keys.load_key(retired.with_suffix(".key").read_bytes()))
    rows = ensure(c)
    kubernetes_leaves = [r for r in rows if r.file.endswith(".crt") and not r.identity.endswith(" CA")]
    reissued = {r.identity for r in rows if r.action.startswith("reissued: not signed by the current kubernetes CA")}
    assert "apiserver" in reissued and "admin" in reissued and "kubelet-client/k8s-1" in reissued
    assert "etcd-server/k8s-1" not in reissued, "the etcd CA was not rotated"
    assert len(kubernetes_leaves) > len(reissued)
    assert (pki_dir(c) / "apiserver.crt").read_bytes() != apiserver_before
    assert (pki_dir(c) / "apiserver.key").read_bytes() == apiserver_key, "keys are kept"
    assert certs.signed_by(x509.load_pem_x509_certificate((pki_dir(c) / "apiserver.crt").read_bytes()), new)
    host = delivered(c, "k8s-1")
    assert pems(host[f"{REMOTE_PKI}/ca.crt"]) == [new, old]
    assert pems(host[ca.signing]) == [new]
    assert admin_ca(c) == [new, old]

    assert ca_rotation.advance(c, [ca], "reissue") == "idle"
    assert not (pki_dir(c) / "ca.prev.crt").exists() and retired.with_suffix(".crt").exists()
    assert not [r for r in ensure(c) if r.action.startswith("reissued")]
    assert pems(delivered(c, "k8s-1")[f"{REMOTE_PKI}/ca.crt"]) == [new]
    assert admin_ca(c) == [new]


def test_a_swap_interrupted_after_the_key_was_replaced_completes(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    ca = kubernetes_ca(c)
    old = ca_cert(c)
    rotation.begin(c, ca)
    new = ca_cert(c, ".next")
    # What the swap does before it replaces the key, then the key replaced: the crash comes before the certificate.
    retired = pki_dir(c) / rotation.RETIRED / f"ca-{old.serial_number:x}"
    retired.parent.mkdir(mode=0o700)
    retired.with_suffix(".key").write_bytes((pki_dir(c) / "ca.key").read_bytes())
    os.replace(pki_dir(c) / "ca.next.key", pki_dir(c) / "ca.key")
    assert rotation.stage(c, ca) == "trust"

    rotation.swap(c, ca)
    assert ca_cert(c) == new and ca_cert(c, ".prev") == old
    assert keys.matches(new, keys.load_key((pki_dir(c) / "ca.key").read_bytes()))
    assert keys.matches(old, keys.load_key(retired.with_suffix(".key").read_bytes())), "the old key is kept"
    assert rotation.stage(c, ca) == "reissue"


def test_a_swap_refuses_when_the_new_cas_key_is_nowhere(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    ca = kubernetes_ca(c)
    rotation.begin(c, ca)
    (pki_dir(c) / "ca.next.key").unlink()
    with pytest.raises(ValueError, match=r"ca\.next\.crt: its key is neither"):
        rotation.swap(c, ca)
    assert rotation.stage(c, ca) == "trust" and (pki_dir(c) / "ca.key").exists()


def facts_with(files: dict[str, bytes]):
    items = " ".join(f"{path}|{base64.b64encode(content).decode()}" for path, content in files.items())
    return parse(f"os_id=rocky\nos_version=9.4\ntrust= {items}\n")


def test_hosts_between_two_steps_pass_the_identity_check_and_another_clusters_do_not(tmp_path: Path) -> None:
    c, other = cluster(tmp_path / "ours"), cluster(tmp_path / "theirs")
    ca = kubernetes_ca(c)
    old_pem = (pki_dir(c) / "ca.crt").read_bytes()
    rotation.begin(c, ca)
    rotation.swap(c, ca)  # the directory has moved on; the hosts still hold the old CA alone
    credentials = prepare(c).inputs.credentials
    theirs = (pki_dir(other) / "ca.crt").read_bytes()
    facts = {
        "k8s-1": facts_with({f"{REMOTE_PKI}/ca.crt": old_pem}),
        "k8s-2": facts_with({f"{REMOTE_PKI}/ca.crt": theirs}),
        "k8s-3": facts_with({}),
    }
    found = {f.host: f for f in identity.check(c, credentials, facts)}
    assert found["k8s-1"].status == "ok" and found["k8s-3"].status == "ok"
    assert found["k8s-2"].status == "fail" and "another cluster directory" in found["k8s-2"].detail
    rotation.finish(c, ca)  # once retired, a host still holding only the old CA is another cluster's
    found = {f.host: f for f in identity.check(c, prepare(c).inputs.credentials, facts)}
    assert found["k8s-1"].status == "fail"


def test_the_cas_chosen_one_per_file_and_mixed_steps_refused(tmp_path: Path) -> None:
    single = cluster(tmp_path / "single", certificates={"authorities": "single"})
    assert [ca.name for ca in ca_rotation.selected(single, ["kubernetes", "etcd", "front-proxy"])] == ["kubernetes"]
    split = cluster(tmp_path / "split", certificates={"authorities": "split"})
    chosen = ca_rotation.selected(split, ["kubernetes", "etcd", "front-proxy"])
    assert [ca.name for ca in chosen] == ["kubernetes", "etcd", "front-proxy"]
    with pytest.raises(ca_rotation.RotationError, match="unknown CA kube: choose from kubernetes, etcd, front-proxy"):
        ca_rotation.selected(split, ["kube"])
    rotation.begin(split, chosen[1])
    with pytest.raises(ca_rotation.RotationError, match=r"different rotation steps .*etcd: trust"):
        ca_rotation.selected(split, ["kubernetes", "etcd"])
    assert [ca.name for ca in ca_rotation.selected(split, ["etcd"])] == ["etcd"]


def test_an_imported_ca_is_not_rotated(tmp_path: Path) -> None:
    source = cluster(tmp_path / "source")
    imported = {"cert": str(pki_dir(source) / "ca.crt"), "key": str(pki_dir(source) / "ca.key")}
    c = cluster(tmp_path / "ours", certificates={"import_ca": {"kubernetes": imported}})
    with pytest.raises(ca_rotation.RotationError, match=r"the kubernetes CA is imported \(certificates.import_ca\)"):
        ca_rotation.selected(c, ["kubernetes", "etcd"])
    assert [ca.name for ca in ca_rotation.selected(c, ["etcd"])] == ["etcd"]


def test_assess_writes_nothing_while_a_rotation_is_under_way(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    rotation.begin(c, kubernetes_ca(c))
    before = {p: p.read_bytes() for p in c.dir.rglob("*") if p.is_file()}
    decision = assess(c)
    assert decision.writes, "the kubeconfigs are owed the bundle"
    assert {p: p.read_bytes() for p in c.dir.rglob("*") if p.is_file()} == before
