"""`--json` on inventory.check, certs.check, audit (plan's is shown on the lab), `kubefab kubeconfig`, and
`--limit`'s usage errors: through the real command line, no host needed."""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
from pathlib import Path

import yaml
from cryptography import x509

from kubefab.pki import certs
from tests.cli.test_tasks import cli, inventory  # noqa: F401  (the fixture)


def test_inventory_check_json_lists_hosts_or_every_problem(inventory: Path, tmp_path: Path) -> None:  # noqa: F811
    result = cli("inventory.check", "--json", "--inventory", str(inventory))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["problems"] == []
    assert [h["name"] for h in doc["cluster"]["hosts"]] == ["k8s-1", "k8s-2", "k8s-3"]
    assert doc["cluster"]["hosts"][0]["roles"] == ["etcd", "control_plane", "lb", "worker"]
    bad = yaml.safe_load(inventory.read_text())
    bad["kubernetes_version"] = 1.35
    bad["hosts"][1]["ip"] = "10.0.0.300"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(bad))
    result = cli("inventory.check", "--json", "--inventory", str(broken))
    assert result.returncode == 2
    doc = json.loads(result.stdout)  # nothing but the document on stdout
    assert doc["ok"] is False and doc["cluster"] is None
    fields = {(p["field"], p["host"]) for p in doc["problems"] if p["severity"] == "error"}
    assert fields == {("kubernetes_version", None), ("hosts[1].ip", "k8s-2")}
    assert all(p["message"].startswith(str(broken)) for p in doc["problems"])


def test_certs_check_json_rows_and_verdict(inventory: Path) -> None:  # noqa: F811
    missing = cli("certs.check", "--json", "--inventory", str(inventory))
    assert missing.returncode == 1 and json.loads(missing.stdout)["ok"] is False
    assert cli("pki", "--inventory", str(inventory)).returncode == 0
    result = cli("certs.check", "--json", "--inventory", str(inventory))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["read_from"] == str(inventory.parent / "cluster")
    apiserver = next(r for r in doc["certificates"] if r["identity"] == "apiserver")
    assert apiserver["status"] == "ok" and apiserver["days_left"] in (364, 365)
    assert dt.datetime.fromisoformat(apiserver["expires"]) > dt.datetime.now(dt.UTC)  # ISO 8601, with its zone


def test_audit_json_has_every_check_with_its_result() -> None:
    result = cli("audit", "--json", "--inventory", "inventory/example.yaml")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and {c["result"] for c in doc["checks"]} <= {"pass", "warn"}
    assert {c["host"] for c in doc["checks"]} == {"k8s-1", "k8s-2", "k8s-3"}


def test_kubeconfig_admin_and_a_short_lived_user(inventory: Path, tmp_path: Path) -> None:  # noqa: F811
    none_yet = cli("kubeconfig", "--inventory", str(inventory))
    assert none_yet.returncode == 1 and "kubefab pki" in none_yet.stderr
    assert cli("pki", "--inventory", str(inventory)).returncode == 0
    admin = cli("kubeconfig", "--inventory", str(inventory))
    assert admin.returncode == 0 and admin.stdout == (inventory.parent / "cluster/kubeconfig/admin.conf").read_text()
    out = tmp_path / "alice.conf"
    made = cli("kubeconfig", "--inventory", str(inventory), "--user", "alice", "--group", "dev", "--out", str(out))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and "valid until" in made.stdout
    doc = yaml.safe_load(out.read_text())
    cert = x509.load_pem_x509_certificate(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))
    assert certs.describe(cert).common_name == "alice" and certs.describe(cert).organizations == ("dev",)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() == 24 * 3600 + 300  # + backdate
    again = cli("kubeconfig", "--inventory", str(inventory), "--user", "alice", "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    assert cli("kubeconfig", "--inventory", str(inventory), "--user", "bob", "--hours", "0").returncode == 2
    assert cli("kubeconfig", "--inventory", str(inventory), "--group", "dev").returncode == 2


def test_limit_to_an_unknown_host_is_a_usage_error_before_anything_else(inventory: Path) -> None:  # noqa: F811
    for task in ("deploy", "plan", "verify"):
        result = cli(task, "--inventory", str(inventory), "--limit", "k8s-1,nope")
        assert result.returncode == 2, f"{task}: {result.stderr}"
        assert "nope not in the inventory" in result.stderr and "k8s-1, k8s-2, k8s-3" in result.stderr
    assert not (inventory.parent / "cluster").exists()
