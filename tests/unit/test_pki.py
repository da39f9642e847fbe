"""The PKI through `cryptography`: every identity's subject, SANs, usages, validity and key type; file modes;
idempotence; reissue of exactly the leaves an inventory change affects; refusal to overwrite anything."""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import os
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubefab.pki import certs, keys
from kubefab.pki.profiles import authorities, identities
from kubefab.pki.store import PKIError, assess, ensure, pki_dir, retire_host
from kubefab.playbooks.inventory import load

EXAMPLE = Path(__file__).parents[2] / "inventory" / "example.yaml"


def make_cluster(tmp_path: Path, **changes: object):
    data = yaml.safe_load(EXAMPLE.read_text())
    data = copy.deepcopy(data)
    data["cluster_dir"] = str(tmp_path / "cluster")
    for key, value in changes.items():
        data[key] = value
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load(path)


def cert(cluster, rel: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((pki_dir(cluster) / rel).read_bytes())


def cn(c: x509.Certificate) -> str:
    return str(c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def orgs(c: x509.Certificate) -> list[str]:
    return [str(a.value) for a in c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def sans(c: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {str(i) for i in ext.get_values_for_type(x509.IPAddress)}


def eku(c: x509.Certificate) -> set:
    return set(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture
def cluster(tmp_path: Path):
    c = make_cluster(tmp_path)
    ensure(c)
    return c


def test_authorities_are_cas_with_cert_sign(cluster) -> None:
    for rel, name in [("ca.crt", "kubernetes"), ("etcd/ca.crt", "etcd-ca"), ("front-proxy-ca.crt", "front-proxy-ca")]:
        ca = cert(cluster, rel)
        assert cn(ca) == name
        assert certs.is_ca(ca)
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.key_cert_sign and usage.crl_sign
        days = (ca.not_valid_after_utc - ca.not_valid_before_utc).days
        assert days == cluster.certificates.ca_validity_days


def test_apiserver_serving_certificate(cluster) -> None:
    c = cert(cluster, "apiserver.crt")
    assert cn(c) == "kube-apiserver" and eku(c) == {ExtendedKeyUsageOID.SERVER_AUTH}
    dns, ips = sans(c)
    assert {
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "k8s-1",
        "k8s-2",
        "k8s-3",
        "k8s.example.internal",
    } <= dns
    assert {"10.96.0.1", "127.0.0.1", "192.168.10.11", "192.168.10.12", "192.168.10.13", "192.168.10.100"} <= ips
    assert certs.signed_by(c, cert(cluster, "ca.crt"))


@pytest.mark.parametrize(
    ("rel", "common_name", "organizations", "ca"),
    [
        ("apiserver-kubelet-client.crt", "kube-apiserver-kubelet-client", [], "ca.crt"),
        ("apiserver-etcd-client.crt", "kube-apiserver-etcd-client", [], "etcd/ca.crt"),
        ("front-proxy-client.crt", "front-proxy-client", [], "front-proxy-ca.crt"),
        ("etcd/healthcheck-client.crt", "kube-etcd-healthcheck-client", [], "etcd/ca.crt"),
        ("admin.crt", "kubernetes-admin", ["system:masters"], "ca.crt"),
        ("controller-manager.crt", "system:kube-controller-manager", [], "ca.crt"),
        ("scheduler.crt", "system:kube-scheduler", [], "ca.crt"),
        ("kube-proxy.crt", "system:kube-proxy", [], "ca.crt"),
        ("hosts/k8s-2/kubelet-client.crt", "system:node:k8s-2", ["system:nodes"], "ca.crt"),
    ],
)
def test_client_identities(cluster, rel: str, common_name: str, organizations: list[str], ca: str) -> None:
    c = cert(cluster, rel)
    assert cn(c) == common_name
    assert orgs(c) == organizations
    assert eku(c) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert certs.signed_by(c, cert(cluster, ca))
    assert not certs.is_ca(c)
    assert c.extensions.get_extension_for_class(x509.KeyUsage).critical


def test_etcd_member_certificates(cluster) -> None:
    for host in cluster.etcd_hosts:
        for kind in ("server", "peer"):
            c = cert(cluster, f"hosts/{host.name}/etcd-{kind}.crt")
            assert cn(c) == host.name
            assert sans(c) == ({host.name, "localhost"}, {str(host.address), "127.0.0.1"})
            assert eku(c) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
            assert certs.signed_by(c, cert(cluster, "etcd/ca.crt"))
            assert not certs.signed_by(c, cert(cluster, "ca.crt"))


def test_kubelet_serving_certificate(cluster) -> None:
    c = cert(cluster, "hosts/k8s-3/kubelet-server.crt")
    assert (cn(c), orgs(c)) == ("system:node:k8s-3", ["system:nodes"])
    assert sans(c) == ({"k8s-3"}, {"192.168.10.13"})
    assert eku(c) == {ExtendedKeyUsageOID.SERVER_AUTH}


def test_validity_and_key_type(cluster) -> None:
    for ident in identities(cluster):
        c = cert(cluster, f"{ident.file}.crt")
        assert (c.not_valid_after_utc - c.not_valid_before_utc).days == cluster.certificates.validity_days
        assert isinstance(c.public_key(), ec.EllipticCurvePublicKey)
        assert c.public_key().curve.name == "secp256r1"


def test_service_account_key_is_its_own(cluster) -> None:
    sa = keys.load_key((pki_dir(cluster) / "sa.key").read_bytes())
    for rel in ("ca.crt", "etcd/ca.crt", "front-proxy-ca.crt"):
        assert not keys.matches(cert(cluster, rel), sa)
    assert (pki_dir(cluster) / "sa.pub").read_bytes() == keys.public_pem(sa)


def test_keys_0600_dirs_0700(cluster) -> None:
    key_files = list(cluster.dir.rglob("*.key")) + list(cluster.dir.rglob("*.conf"))
    assert len(key_files) > 20
    for path in key_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in [cluster.dir, *(p for p in cluster.dir.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_ca_keys_only_for_control_plane(tmp_path: Path) -> None:
    make_cluster(tmp_path)
    data = yaml.safe_load((tmp_path / "inventory.yaml").read_text())
    data["hosts"].append({"name": "w-1", "ip": "192.168.10.21", "roles": ["worker"]})
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(data))
    c = load(tmp_path / "inventory.yaml")
    specs = {a.name: a for a in authorities(c)}
    assert specs["kubernetes"].key_hosts == ("k8s-1", "k8s-2", "k8s-3")
    assert "w-1" in specs["kubernetes"].cert_hosts
    assert specs["etcd"].key_hosts == specs["front-proxy"].key_hosts == ()
    assert "w-1" not in specs["etcd"].cert_hosts


def test_second_run_issues_nothing_and_touches_nothing(cluster) -> None:
    before = {p: p.stat().st_mtime_ns for p in cluster.dir.rglob("*") if p.is_file()}
    rows = ensure(cluster)
    assert {r.action for r in rows} == {"kept"}
    assert {p: p.stat().st_mtime_ns for p in cluster.dir.rglob("*") if p.is_file()} == before


def test_changed_control_plane_ip_reissues_only_affected_leaves(tmp_path: Path, cluster) -> None:
    data = yaml.safe_load((tmp_path / "inventory.yaml").read_text())
    data["hosts"][1]["ip"] = "192.168.10.22"
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(data))
    changed = load(tmp_path / "inventory.yaml")
    rows = ensure(changed)
    reissued = {r.identity for r in rows if r.action.startswith("reissued")}
    assert reissued == {"apiserver", "etcd-server/k8s-2", "etcd-peer/k8s-2", "kubelet-server/k8s-2"}
    assert not any(r.action in ("created", "issued") for r in rows)
    why = next(r.action for r in rows if r.identity == "apiserver")
    assert "192.168.10.22" in why and "192.168.10.12" in why
    assert "192.168.10.22" in sans(cert(changed, "apiserver.crt"))[1]


def test_expiring_leaves_are_renewed(cluster) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=cluster.certificates.validity_days - 10)
    rows = ensure(cluster, now=later)
    renewed = [r for r in rows if r.action.startswith("reissued")]
    assert len(renewed) == len(identities(cluster))
    assert all("expires in" in r.action for r in renewed)
    assert all(r.action == "kept" for r in rows if r.identity.endswith(" CA"))


def test_rsa_option(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, certificates={"algorithm": "rsa-2048"})
    ensure(c)
    leaf = cert(c, "admin.crt")
    assert isinstance(leaf.public_key(), rsa.RSAPublicKey) and leaf.public_key().key_size == 2048
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


def test_algorithm_change_reissues_leaves_but_keeps_cas(cluster, tmp_path: Path) -> None:
    data = yaml.safe_load((tmp_path / "inventory.yaml").read_text())
    data["certificates"]["algorithm"] = "rsa-2048"
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(data))
    rows = ensure(load(tmp_path / "inventory.yaml"))
    assert all("key ecdsa-p256 -> rsa-2048" in r.action for r in rows if r.identity == "admin" and "pki/" in r.file)
    assert [r.action for r in rows if r.identity.endswith(" CA")] == ["kept"] * 3


def test_single_ca_mode(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, certificates={"authorities": "single"})
    ensure(c)
    assert not (pki_dir(c) / "etcd" / "ca.crt").exists()
    ca = cert(c, "ca.crt")
    assert certs.signed_by(cert(c, "apiserver-etcd-client.crt"), ca)
    assert certs.signed_by(cert(c, "front-proxy-client.crt"), ca)


def test_imported_organisation_ca(tmp_path: Path) -> None:
    org = tmp_path / "org"
    org.mkdir()
    now = dt.datetime.now(dt.UTC)
    key = keys.new_key("ecdsa-p256")
    org_cert = certs.new_ca("Example Org Kubernetes CA", key, 3650, now)
    (org / "ca.pem").write_bytes(org_cert.public_bytes(Encoding.PEM))
    (org / "ca-key.pem").write_bytes(keys.key_pem(key))
    c = make_cluster(
        tmp_path, certificates={"import_ca": {"kubernetes": {"cert": "org/ca.pem", "key": "org/ca-key.pem"}}}
    )
    rows = ensure(c)
    assert ("kubernetes CA", "imported") in {(r.identity, r.action) for r in rows}
    assert cert(c, "ca.crt") == org_cert
    assert certs.signed_by(cert(c, "admin.crt"), org_cert)
    # A different organisation CA later is refused, naming the file, and nothing changes.
    other = certs.new_ca("Another CA", key, 3650, now)
    (org / "ca.pem").write_bytes(other.public_bytes(Encoding.PEM))
    with pytest.raises(PKIError, match=r"ca\.crt: holds a different kubernetes CA"):
        ensure(c)
    assert cert(c, "ca.crt") == org_cert


def test_mismatched_pair_is_an_error_and_nothing_is_written(cluster) -> None:
    admin_key = pki_dir(cluster) / "admin.key"
    admin_key.write_bytes((pki_dir(cluster) / "scheduler.key").read_bytes())
    (pki_dir(cluster) / "controller-manager.crt").write_text("garbage")
    os.remove(pki_dir(cluster) / "hosts" / "k8s-1" / "etcd-peer.key")
    # A change that would otherwise reissue a leaf must not be applied either.
    before = {p: p.stat().st_mtime_ns for p in cluster.dir.rglob("*") if p.is_file()}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    with pytest.raises(PKIError) as exc:
        ensure(cluster, now=later)
    text = str(exc.value)
    assert "admin.key: does not match the certificate" in text
    assert "controller-manager.crt: not a readable PEM certificate" in text
    assert "etcd-peer.crt: present without etcd-peer.key" in text
    assert {p: p.stat().st_mtime_ns for p in cluster.dir.rglob("*") if p.is_file()} == before


def test_leaf_from_another_ca_is_reissued(cluster) -> None:
    stranger_key = keys.new_key("ecdsa-p256")
    stranger = certs.Authority(certs.new_ca("kubernetes", stranger_key, 10, dt.datetime.now(dt.UTC)), stranger_key)
    ident = next(i for i in identities(cluster) if i.id == "kube-proxy")
    private = keys.load_key((pki_dir(cluster) / "kube-proxy.key").read_bytes())
    forged = certs.issue(stranger, ident.request, private, 5, dt.datetime.now(dt.UTC))
    (pki_dir(cluster) / "kube-proxy.crt").write_bytes(forged.public_bytes(Encoding.PEM))
    rows = {r.identity: r.action for r in ensure(cluster) if r.file.startswith("pki/")}
    assert rows["kube-proxy"].startswith("reissued: not signed by the current kubernetes CA")
    assert certs.signed_by(cert(cluster, "kube-proxy.crt"), cert(cluster, "ca.crt"))


def test_ip_sans_are_ipv4_objects(cluster) -> None:
    ident = next(i for i in identities(cluster) if i.id == "apiserver")
    assert all(isinstance(ip, ipaddress.IPv4Address) for ip in ident.request.ip_addresses)


def test_renew_all_reissues_every_leaf_with_its_key_and_keeps_the_cas(cluster) -> None:
    before = {p: p.read_bytes() for p in pki_dir(cluster).rglob("*") if p.is_file()}
    decision = assess(cluster, renew_all=True)
    leaves = [r for r in decision.rows if r.identity in {i.id for i in identities(cluster)} and r.file.endswith(".crt")]
    assert leaves and {r.action for r in leaves} == {"reissued: renewed (--all)"}
    assert {r.action for r in decision.rows if r.identity.endswith(" CA")} == {"kept"}
    written = {p for p in decision.writes if p.suffix in (".crt", ".key")}
    assert all(p.suffix == ".crt" or decision.writes[p] == before[p] for p in written)  # keys kept
    assert all(decision.writes[p] != before[p] for p in written if p.suffix == ".crt")
    assert {r.action for r in decision.rows if r.file.startswith("kubeconfig/")} == {"written"}  # new certs inside
    assert {r.action for r in assess(cluster).rows} <= {"kept"}  # without --all: nothing is due


def test_a_removed_hosts_credentials_are_moved_under_retired_and_kept(tmp_path: Path) -> None:
    c = make_cluster(tmp_path)
    ensure(c)
    host = pki_dir(c) / "hosts" / "k8s-3"
    before = {p.relative_to(host): p.read_bytes() for p in host.rglob("*") if p.is_file()}
    conf = (c.dir / "kubeconfig" / "kubelet-k8s-3.conf").read_bytes()
    assert before and (pki_dir(c) / "hosts" / "k8s-2").exists()

    into = retire_host(c, "k8s-3", dt.datetime(2026, 12, 7, 15, 0, tzinfo=dt.UTC))
    assert into == pki_dir(c) / "retired" / "hosts" / "k8s-3-20261207T150000Z"
    assert not host.exists() and not (c.dir / "kubeconfig" / "kubelet-k8s-3.conf").exists()
    assert {p.relative_to(into / "k8s-3"): p.read_bytes() for p in (into / "k8s-3").rglob("*") if p.is_file()} == before
    assert (into / "kubelet-k8s-3.conf").read_bytes() == conf
    assert oct(os.stat(into).st_mode & 0o777) == "0o700"
    assert (pki_dir(c) / "hosts" / "k8s-2").exists(), "the other hosts' files stay"
    assert retire_host(c, "k8s-3") is None, "nothing left to move"
