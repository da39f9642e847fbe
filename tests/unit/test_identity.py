"""A cluster's identity is its CA: the hosts' CA files against the cluster directory's, the directory found from
the inventory's location, and the PKI decided in memory until a run commits it."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from kubefab.playbooks import identity, local_checks
from kubefab.playbooks.clusterdir import prepare
from kubefab.playbooks.facts import TRUST_FILES, parse
from kubefab.playbooks.inventory import load
from kubefab.playbooks.model import Cluster
from tests.conftest import EXAMPLE


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from an empty directory: a checkout's own clusters/ must not count as the earlier default."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")


def inventory(where: Path, **extra: object) -> Cluster:
    data = yaml.safe_load(EXAMPLE.read_text()) | {"bundle": str(where / "bundle"), **extra}
    where.mkdir(parents=True, exist_ok=True)
    (where / "cluster.yaml").write_text(yaml.safe_dump(data))
    return load(where / "cluster.yaml")


def facts_with(files: dict[str, bytes]):
    """Facts as the facts command prints them, with these CA files on the host."""
    items = " ".join(f"{path}|{base64.b64encode(content).decode()}" for path, content in files.items())
    return parse(f"os_id=rocky\nos_version=9.4\ntrust= {items}\n")


def test_the_fingerprint_is_the_certificates_sha256(tmp_path: Path) -> None:
    pem = prepare(inventory(tmp_path)).inputs.credentials["pki/ca.crt"]
    digest = x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex().upper()
    (fingerprint,) = identity.fingerprints(pem)
    assert fingerprint.replace(":", "") == digest and len(fingerprint.split(":")) == 32
    assert identity.fingerprints(pem + pem) == (fingerprint, fingerprint)
    assert identity.fingerprints(b"not a certificate") == ()


def test_every_path_a_ca_is_installed_at_is_read_by_the_facts(tmp_path: Path) -> None:
    for authorities in ("single", "split"):
        c = inventory(tmp_path / authorities, certificates={"authorities": authorities})
        assert set(identity.expected(c, prepare(c).inputs.credentials)) <= set(TRUST_FILES)


def test_hosts_with_the_same_ca_or_none_pass_and_another_ca_is_refused_naming_both(tmp_path: Path) -> None:
    ours, theirs = inventory(tmp_path / "ours"), inventory(tmp_path / "theirs")
    mine = prepare(ours).inputs.credentials
    other = prepare(theirs).inputs.credentials
    facts = {
        "k8s-1": facts_with({"/etc/kubernetes/pki/ca.crt": mine["pki/ca.crt"]}),
        "k8s-2": facts_with({}),
        "k8s-3": facts_with({"/etc/kubernetes/pki/ca.crt": other["pki/ca.crt"]}),
    }
    found = {f.host: f for f in identity.check(ours, mine, facts)}
    assert found["k8s-1"].status == "ok" and "same CA" in found["k8s-1"].detail
    assert found["k8s-2"].status == "ok" and "new host" in found["k8s-2"].detail
    assert found["k8s-3"].status == "fail"
    (local,) = identity.fingerprints(mine["pki/ca.crt"])
    (remote,) = identity.fingerprints(other["pki/ca.crt"])
    assert local in found["k8s-3"].detail and remote in found["k8s-3"].detail
    assert str(ours.dir) in found["k8s-3"].detail


def test_a_host_trusting_a_bundle_that_holds_the_local_ca_passes(tmp_path: Path) -> None:
    ours, theirs = inventory(tmp_path / "ours"), inventory(tmp_path / "theirs")
    mine, other = prepare(ours).inputs.credentials, prepare(theirs).inputs.credentials
    bundle = other["pki/ca.crt"] + mine["pki/ca.crt"]  # during a CA rotation
    facts = {h.name: facts_with({"/etc/kubernetes/pki/ca.crt": bundle}) for h in ours.hosts}
    assert {f.status for f in identity.check(ours, mine, facts)} == {"ok"}


def test_an_etcd_ca_from_another_cluster_is_caught_too(tmp_path: Path) -> None:
    ours = inventory(tmp_path / "ours", certificates={"authorities": "split"})
    theirs = inventory(tmp_path / "theirs", certificates={"authorities": "split"})
    mine, other = prepare(ours).inputs.credentials, prepare(theirs).inputs.credentials
    facts = {
        h.name: facts_with(
            {"/etc/kubernetes/pki/ca.crt": mine["pki/ca.crt"], "/etc/etcd/pki/ca.crt": other["pki/etcd/ca.crt"]}
        )
        for h in ours.hosts
    }
    findings = identity.check(ours, mine, facts)
    assert {f.status for f in findings} == {"fail"}
    assert all("/etc/etcd/pki/ca.crt holds the etcd CA" in f.detail for f in findings)


def test_the_cluster_directory_is_beside_the_inventory_wherever_kubefab_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = inventory(tmp_path / "project" / "inventory")
    for cwd in (tmp_path, tmp_path / "project"):
        monkeypatch.chdir(cwd)
        assert load(c.source).dir == tmp_path / "project" / "inventory" / "clusters" / "book"


def test_a_pki_at_the_earlier_default_is_not_silently_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = inventory(tmp_path / "inventory")
    (tmp_path / "clusters" / "book" / "pki").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    (problem,) = [f for f in local_checks.check(c) if f.field == ("cluster_dir",)]
    assert str(tmp_path / "clusters" / "book") in problem.detail and str(c.dir) in problem.detail
    c.dir.mkdir(parents=True)  # once moved (or a cluster directory exists where it is looked for), no problem
    assert not [f for f in local_checks.check(c) if f.field == ("cluster_dir",)]


def test_prepare_writes_nothing_and_commit_writes_what_it_decided(tmp_path: Path) -> None:
    c = inventory(tmp_path)
    first = prepare(c)
    assert not c.dir.exists()
    assert "pki/ca.crt" in first.writes and "secrets.yaml" in first.writes
    first.commit()
    assert (c.dir / "pki" / "ca.crt").read_bytes() == first.inputs.credentials["pki/ca.crt"]
    again = prepare(c)
    assert again.writes == [] and again.inputs.credentials == first.inputs.credentials
    assert again.inputs.secrets == first.inputs.secrets
    # A change of SANs is decided in memory: the certificate on disk stays as it was.
    before = (c.dir / "pki" / "apiserver.crt").read_bytes()
    data = yaml.safe_load(c.source.read_text())
    data["api"]["extra_sans"] = ["api.example.internal"]
    c.source.write_text(yaml.safe_dump(data))
    changed = prepare(load(c.source))
    assert "pki/apiserver.crt" in changed.writes and "pki/ca.crt" not in changed.writes
    assert changed.inputs.credentials["pki/apiserver.crt"] != before
    assert (c.dir / "pki" / "apiserver.crt").read_bytes() == before
