"""`kubefab init`: a starter inventory that validates, in the book's layout, and refusals that write nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubefab.playbooks.inventory import load
from kubefab.playbooks.starter import StarterError, parse_hosts, roles_for
from tests.cli.test_tasks import cli


def test_five_hosts_with_a_vip_are_the_books_layout_plus_workers(tmp_path: Path) -> None:
    out = tmp_path / "inventory" / "prod.yaml"
    hosts = "10.0.0.11,10.0.0.12,cp-c=10.0.0.13,10.0.0.21,10.0.0.22"
    result = cli("init", "--hosts", hosts, "--vip", "10.0.0.100", "--key", "~/.ssh/k", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}: 5 hosts" in result.stdout
    cluster = load(out)  # valid, with the file's name as the cluster's
    assert cluster.name == "prod" and str(cluster.api.vip) == "10.0.0.100"
    assert [h.name for h in cluster.hosts] == ["k8s-1", "k8s-2", "cp-c", "k8s-4", "k8s-5"]
    assert [h.name for h in cluster.lb_hosts] == ["k8s-1", "k8s-2"]
    assert [h.name for h in cluster.etcd_hosts] == [h.name for h in cluster.control_plane] == ["k8s-1", "k8s-2", "cp-c"]
    assert len(cluster.workers) == 5
    assert "# " in out.read_text() and yaml.safe_load(out.read_text())["ssh"] == {"user": "root", "key": "~/.ssh/k"}


def test_without_out_it_prints_and_an_existing_file_is_kept(tmp_path: Path) -> None:
    printed = cli("init", "--hosts", "10.0.0.11")
    assert printed.returncode == 0 and yaml.safe_load(printed.stdout)["hosts"][0]["roles"] == [
        "etcd",
        "control_plane",
        "worker",
    ]
    out = tmp_path / "mine.yaml"
    out.write_text("name: mine\n")
    result = cli("init", "--hosts", "10.0.0.11", "--out", str(out))
    assert result.returncode == 2 and "exists; --force replaces it" in result.stderr
    assert out.read_text() == "name: mine\n"
    assert cli("init", "--hosts", "10.0.0.11", "--out", str(out), "--force").returncode == 0
    assert load(out).name == "mine"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hosts", "10.0.0.11,not-an-ip"], "'not-an-ip' is not IP or NAME=IP"),
        (["--hosts", ""], "no host given"),
        (["--hosts", "10.0.0.11,10.0.0.12", "--vip", "10.0.0.100"], "--vip: needs three or more hosts"),
        (["--hosts", "Bad_Name=10.0.0.11"], "nothing was written"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "x.yaml"
    result = cli("init", *args, "--out", str(out))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not out.exists()


def test_roles_by_count() -> None:
    assert [roles_for(2, i, vip=False) for i in range(2)] == [["etcd", "control_plane", "worker"], ["worker"]]
    assert roles_for(3, 2, vip=True) == ["etcd", "control_plane", "worker"]
    with pytest.raises(StarterError):
        parse_hosts("10.0.0.1=k8s-1")
