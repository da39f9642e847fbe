"""Task-level behaviour an operator relies on: where the inventory comes from, `certs.check`'s verdict,
generated secrets created once and reused, and `render` giving byte-identical trees."""

from __future__ import annotations

import datetime as dt
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from invoke.exceptions import Exit

from kubefab.pki.report import check_rows
from kubefab.pki.store import ensure
from kubefab.playbooks import secrets
from kubefab.playbooks.inventory import ENV_VAR, load
from kubefab.playbooks.tasks.common import inventory_path
from tests.conftest import EXAMPLE


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kubefab.playbooks.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text()) | {
        "cluster_dir": str(tmp_path / "cluster"),
        "bundle": str(tmp_path / "bundle"),
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_inventory_from_option_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "from-env.yaml")
    assert inventory_path("given.yaml") == Path("given.yaml")
    assert inventory_path(None) == Path("from-env.yaml")
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(Exit, match="no inventory: pass --inventory FILE or set KUBEFAB_INVENTORY") as caught:
        inventory_path(None)
    assert caught.value.code == 2


def test_configuration_files_do_not_reach_kubefab(tmp_path: Path, inventory: Path) -> None:
    # Fabric's and invoke's files could otherwise set run.dry or sudo passwords behind the inventory's back.
    (tmp_path / ".invoke.yaml").write_text("run: {dry: true}\n")
    (tmp_path / "fabric.yaml").write_text("kubefab: {inventory: elsewhere.yaml}\n")
    result = cli("inventory.check", cwd=tmp_path, env={"HOME": str(tmp_path), ENV_VAR: ""})
    assert result.returncode == 2 and "no inventory" in result.stderr


def test_inventory_from_the_environment_on_the_command_line(inventory: Path) -> None:
    result = cli("inventory.check", env={ENV_VAR: str(inventory)})
    assert result.returncode == 0 and "inventory OK" in result.stdout


def test_invalid_inventory_exits_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        EXAMPLE.read_text()
        .replace("virtual_router_id: 51", "virtual_router_id: 300")
        .replace("ip: 192.168.10.12", "ip: 192.168.10.300")
    )
    result = cli("inventory.check", "--inventory", str(bad))
    assert result.returncode == 2
    assert "api.virtual_router_id" in result.stderr and "host k8s-2: hosts[1].ip" in result.stderr
    assert "2 problem(s); nothing was changed" in result.stderr


def test_fab_pki_twice_reports_kept_and_issued(inventory: Path) -> None:
    first = cli("pki", "--inventory", str(inventory))
    assert first.returncode == 0 and "kept 0, issued 22" in first.stdout, first.stdout[-500:]  # 22 leaves
    second = cli("pki", "--inventory", str(inventory))
    assert second.returncode == 0 and "issued 0" in second.stdout and "other changes 0" in second.stdout


def test_certs_check_flags_expiry_and_mismatch(inventory: Path) -> None:
    cluster = load(inventory)
    ensure(cluster)
    assert {r.status for r in check_rows(cluster)} == {"ok"}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=cluster.certificates.validity_days - 5)
    soon = {r.identity for r in check_rows(cluster, later) if r.status == "expires soon"}
    assert "apiserver" in soon and "kubernetes CA" not in soon
    moved = yaml.safe_load(inventory.read_text())
    moved["api"]["extra_sans"] = ["other.example.internal"]
    inventory.write_text(yaml.safe_dump(moved))
    rows = {r.identity: r.status for r in check_rows(load(inventory))}
    assert rows["apiserver"].startswith("mismatch: DNS SANs")
    result = cli("certs.check", "--inventory", str(inventory))
    assert result.returncode == 1 and "need attention" in result.stderr


def test_rotate_ca_refuses_an_unknown_ca_and_writes_nothing_before_its_checks_pass(inventory: Path) -> None:
    cluster = load(inventory)
    ensure(cluster)
    before = {p: p.read_bytes() for p in cluster.dir.rglob("*") if p.is_file()}
    unknown = cli("certs.rotate-ca", "--ca", "kubernetes,kube", "--inventory", str(inventory))
    assert unknown.returncode == 2 and "unknown CA kube: choose from kubernetes, etcd, front-proxy" in unknown.stderr
    no_bundle = cli("certs.rotate-ca", "--inventory", str(inventory))  # the example's bundle was never made
    assert no_bundle.returncode == 1 and "the bundle is not ready; no host was touched" in no_bundle.stderr
    assert {p: p.read_bytes() for p in cluster.dir.rglob("*") if p.is_file()} == before, "a CA was written"


def test_certs_check_reports_missing_certificates(inventory: Path) -> None:
    result = cli("certs.check", "--inventory", str(inventory))
    assert result.returncode == 1 and "missing" in result.stdout


def test_secrets_created_once_private_and_reused(inventory: Path) -> None:
    cluster = load(inventory)
    first = secrets.ensure(cluster)
    path = secrets.path(cluster)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mtime = path.stat().st_mtime_ns
    assert secrets.ensure(cluster) == first and path.stat().st_mtime_ns == mtime
    assert len(first.vrrp_password) == 8 and len(first.stats_password) >= 20
    # A secret removed by hand is generated again; the others are kept.
    doc = yaml.safe_load(path.read_text())
    del doc["stats_password"]
    path.write_text(yaml.safe_dump(doc))
    again = secrets.ensure(cluster)
    assert again.encryption_key == first.encryption_key and again.stats_password != first.stats_password
    assert secrets.generate() != secrets.generate()


def test_render_twice_gives_byte_identical_trees(inventory: Path, tmp_path: Path) -> None:
    for out in ("one", "two"):
        result = cli("render", "--inventory", str(inventory), "--out", str(tmp_path / out))
        assert result.returncode == 0, result.stderr
    one = {p.relative_to(tmp_path / "one"): p.read_bytes() for p in (tmp_path / "one").rglob("*") if p.is_file()}
    two = {p.relative_to(tmp_path / "two"): p.read_bytes() for p in (tmp_path / "two").rglob("*") if p.is_file()}
    assert one == two and len(one) > 150
    assert stat.S_IMODE((tmp_path / "one").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "one" / "k8s-1" / "etc/kubernetes/pki/ca.key").stat().st_mode) == 0o600


def test_render_says_what_it_writes_and_leaves_no_stale_file(inventory: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = cli("render", "--inventory", str(inventory), "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "created kubernetes CA" in first.stdout and "a new cluster identity" in first.stdout
    assert f"cluster directory {tmp_path / 'cluster'}: wrote" in first.stdout
    (out / "k8s-1" / "etc" / "stale.conf").write_text("from a render of another inventory\n")
    again = cli("render", "--inventory", str(inventory), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert not (out / "k8s-1" / "etc" / "stale.conf").exists()
    assert "cluster directory" not in again.stdout and "created" not in again.stdout  # nothing new to write


def test_render_refuses_a_directory_it_did_not_write(inventory: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me\n")
    result = cli("render", "--inventory", str(inventory), "--out", str(mine))
    assert result.returncode == 2 and "was not written by `kubefab render`" in result.stderr
    assert (mine / "notes.txt").read_text() == "keep me\n"
    assert not (tmp_path / "cluster").exists()  # refused before the PKI was written


def test_help_after_a_task_with_a_positional_argument() -> None:
    from kubefab.playbooks.cli import help_first

    assert help_first(["kubefab", "lab.ssh", "--help"]) == ["kubefab", "--help", "lab.ssh"]
    assert help_first(["kubefab", "import-inventory", "src", "-h"]) == ["kubefab", "--help", "import-inventory"]
    assert help_first(["kubefab", "deploy", "--inventory", "x.yaml"]) == ["kubefab", "deploy", "--inventory", "x.yaml"]
    result = cli("lab.ssh", "--help")
    assert result.returncode == 0 and "lab host, e.g. lab-1" in result.stdout


def test_a_stuck_run_prints_its_threads_on_sigusr1() -> None:
    """What `kubefab` registers at start: SIGUSR1 dumps every thread's stack and the run goes on."""
    code = (
        "import threading, time; from kubefab.playbooks.cli import dump_stacks_on_usr1; dump_stacks_on_usr1(); "
        "threading.Thread(target=time.sleep, args=(30,), name='a-worker', daemon=True).start(); "
        "print('ready', flush=True); time.sleep(1.5); print('went on', flush=True)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == "went on\n", err
    assert "Current thread 0x" in err and "threading.py" in err, err  # the main thread and the worker


def test_the_command_starts_without_the_test_tools() -> None:
    """A plain `pip install kubefab` has no hypothesis or ruff, and `kubefab verify` alone needs pytest: the
    entry module must import with all three blocked."""
    code = (
        "import sys\nfor name in ('pytest', 'testinfra', 'hypothesis'):\n    sys.modules[name] = None\n"
        "import kubefab.playbooks.cli\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_fab_audit_passes_on_the_example() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kubefab.playbooks.cli", "audit", "--inventory", "inventory/example.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checks passed" in result.stdout
    assert "FAIL" not in result.stdout
    assert "documented exceptions" in result.stdout


def test_fab_audit_refuses_a_crafted_inventory(inventory: Path) -> None:
    """The injections that once reached hosts' files: every one named, nothing written."""
    data = yaml.safe_load(inventory.read_text())
    data["registry"] = {
        "mirrors": {"../../../../tmp/x": ["https://m.lan"], "docker.io": ['https://m"\nskip_verify = true']},
        "pause_image": 'pause:3.10"\n[plugins.x]',
    }
    data["versions"] = {"coredns": "1.12.0\n    securityContext: {privileged: true}", "etcd": "3.6.0;reboot"}
    data["hosts"][0]["name"] += "\n"
    inventory.write_text(yaml.safe_dump(data))
    result = cli("audit", "--inventory", str(inventory))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    for field in (
        "registry.mirrors['../../../../tmp/x']",
        "registry.mirrors.docker.io[0]",
        "registry.pause_image",
        "versions.coredns",
        "versions.etcd",
        "hosts[0].name",
    ):
        assert field in result.stderr, field
    assert not (inventory.parent / "cluster").exists()
