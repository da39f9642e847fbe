"""`certs.check --hosts` and `kubefab kubeconfig --user`, without hosts: the read command runs in a real shell
over files laid out as a host holds them, and the rows come from what it printed."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubefab.pki import certs, host_report, keys
from kubefab.pki.host_report import Held
from kubefab.pki.profiles import identities
from kubefab.pki.user import problems, user_kubeconfig
from kubefab.playbooks.inputs import Inputs

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def inputs(example_inputs: Inputs) -> Inputs:
    return example_inputs


def lay_out(inputs: Inputs, root: Path, host_name: str) -> list[Held]:
    """The host's certificate files as deploy delivers them (certificates.plan), under `root`; the Held list
    re-pointed there."""
    c, pki = inputs.cluster, inputs.credentials
    kubeconfigs = {
        i.kubeconfig.remote: f"kubeconfig/{i.kubeconfig.file}"
        for i in identities(c)
        if i.kubeconfig and host_name in i.hosts
    }
    out = []
    for f in host_report.held(c, c.host(host_name)):
        path = root / f.path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if f.kind == "kubeconfig":
            path.write_bytes(pki[kubeconfigs[f.path]])
        elif f.kind == "pem":
            path.write_bytes(pki[f.local] + pki[f.local.removesuffix(".crt") + ".key"])
        else:
            path.write_bytes(pki[f.local])
        out.append(Held(str(path), f.kind, f.local))
    return out


def test_held_lists_what_deploy_delivers_and_never_a_ca_key(inputs: Inputs) -> None:
    c = inputs.cluster
    worker_paths = {f.path for f in host_report.held(c, c.hosts[0])}
    assert "/etc/kubernetes/pki/ca.crt" in worker_paths and "/etc/kubernetes/admin.conf" in worker_paths
    assert "/etc/etcd/pki/server.crt" in worker_paths and not any(p.endswith(".key") for p in worker_paths)


def test_the_read_command_prints_certificates_and_never_a_key(inputs: Inputs, tmp_path: Path) -> None:
    held = lay_out(inputs, tmp_path, inputs.cluster.hosts[0].name)
    assert {f.kind for f in held} >= {"crt", "kubeconfig"}
    missing = Held(str(tmp_path / "nowhere.crt"), "crt", "pki/ca.crt")
    out = subprocess.run(
        ["bash", "-c", host_report.read_command([*held, missing])], capture_output=True, text=True, check=True
    ).stdout
    assert "PRIVATE KEY" not in out and "client-key-data" not in out
    printed = host_report.parse(out)
    assert printed[missing.path] == host_report.MISSING
    for f in held:
        assert host_report.certificate(f, printed[f.path]) is not None, f.path


def test_rows_say_ok_missing_foreign_and_expiring(inputs: Inputs, tmp_path: Path) -> None:
    c = inputs.cluster
    host = c.hosts[0]
    held = host_report.held(c, host)
    by_path = {f.path: f for f in held}
    laid = lay_out(inputs, tmp_path, host.name)
    out = subprocess.run(["bash", "-c", host_report.read_command(laid)], capture_output=True, text=True).stdout
    printed = {f.path: text for f, text in zip(held, [host_report.parse(out)[x.path] for x in laid], strict=True)}
    rows = host_report.rows(c, host, printed, inputs.credentials, NOW)
    assert len(rows) == len(held) and {r.status for r in rows} == {"ok"}
    assert {r.subject for r in rows if r.file == "/etc/kubernetes/admin.conf"} == {
        "CN=kubernetes-admin,O=system:masters"
    }
    # One file gone, one holding a certificate of another CA.
    printed["/etc/kubernetes/pki/front-proxy-ca.crt"] = host_report.MISSING
    key = keys.new_key("ecdsa-p256")
    stranger = certs.Authority(certs.new_ca("stranger", key, 10, NOW), key)
    foreign = certs.issue(stranger, certs.Request("kube-apiserver"), key, 10, NOW)
    printed["/etc/kubernetes/pki/apiserver.crt"] = foreign.public_bytes(serialization.Encoding.PEM).decode()
    status = {r.file: r.status for r in host_report.rows(c, host, printed, inputs.credentials, NOW)}
    assert status["/etc/kubernetes/pki/front-proxy-ca.crt"] == "missing"
    assert (
        status["/etc/kubernetes/pki/apiserver.crt"]
        == "expires soon; not the cluster directory's: `kubefab deploy` delivers it"
    )
    assert by_path["/etc/kubernetes/pki/apiserver.crt"].kind == "crt"
    later = NOW + dt.timedelta(days=365 - c.certificates.renew_within_days + 2)
    status = {r.file: r.status for r in host_report.rows(c, host, printed, inputs.credentials, later)}
    assert status["/etc/kubernetes/admin.conf"] == "expires soon"
    assert status["/etc/kubernetes/pki/ca.crt"] == "ok"  # the CA lives ten years
    status = {
        r.file: r.status for r in host_report.rows(c, host, printed, inputs.credentials, NOW + dt.timedelta(days=400))
    }
    assert status["/etc/kubernetes/admin.conf"] == "expired"


def test_a_user_kubeconfig_is_short_lived_signed_by_the_cluster_ca_and_names_the_user(inputs: Inputs) -> None:
    c = inputs.cluster
    made = user_kubeconfig(c, "alice", ("dev", "ops"), 2, NOW)
    doc = yaml.safe_load(made.content)
    assert doc["clusters"][0]["cluster"]["server"] == c.server_url
    cert = x509.load_pem_x509_certificate(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))
    ca = x509.load_pem_x509_certificate(inputs.credentials["pki/ca.crt"])
    assert certs.signed_by(cert, ca)
    assert certs.describe(cert) == certs.Request("alice", ("dev", "ops"), usages=("client",))
    assert abs(cert.not_valid_after_utc - NOW - dt.timedelta(hours=2)) < dt.timedelta(seconds=1)
    assert made.expires == cert.not_valid_after_utc
    assert doc["users"][0]["name"] == "alice"
    assert problems("alice", ("dev",), 24) == []
    assert problems("", ("a/b",), 0) == [
        "--user '': not blank, no newline, tab or /",
        "--group 'a/b': not blank, no newline, tab or /",
        "--hours 0: between 1 and 8760 (a year)",
    ]
