"""playbooks.etcd_backup's local parts: --keep, the checksum check, and the per-member restore command (the
snapshot, rehearsal and restore themselves run on the lab: tests/lab/test_kubernetes_etcd_restore.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubefab.playbooks.etcd_backup import BackupError, _reserve, prune, restore_command, verify_file
from kubefab.playbooks.inventory import load
from tests.conftest import EXAMPLE


def test_keep_removes_the_oldest_snapshots_with_their_checksums(tmp_path: Path) -> None:
    for stamp in ("20261201T000000Z", "20261202T000000Z", "20261203T000000Z"):
        (tmp_path / f"etcd-{stamp}.db").write_bytes(stamp.encode())
        (tmp_path / f"etcd-{stamp}.db.sha256").write_text("x")
    gone = prune(tmp_path, 2)
    assert [p.name for p in gone] == ["etcd-20261201T000000Z.db"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "etcd-20261202T000000Z.db",
        "etcd-20261202T000000Z.db.sha256",
        "etcd-20261203T000000Z.db",
        "etcd-20261203T000000Z.db.sha256",
    ]


def test_two_backups_in_the_same_second_get_their_own_files(tmp_path: Path) -> None:
    first, second = (
        _reserve(tmp_path / "backups", "etcd-20261203T120000Z"),
        _reserve(tmp_path / "backups", "etcd-20261203T120000Z"),
    )
    assert first != second and first.exists() and second.exists()
    assert oct(first.stat().st_mode & 0o777) == "0o600" and oct(first.parent.stat().st_mode & 0o777) == "0o700"
    assert len(prune(tmp_path / "backups", 1)) == 1  # both count as snapshots for --keep


def test_a_snapshot_that_changed_since_it_was_taken_is_refused(tmp_path: Path) -> None:
    snap = tmp_path / "etcd-1.db"
    snap.write_bytes(b"snapshot")
    digest = verify_file(snap)  # no .sha256 beside it: its digest, nothing to compare
    (tmp_path / "etcd-1.db.sha256").write_text(f"{digest}  etcd-1.db\n")
    assert verify_file(snap) == digest
    snap.write_bytes(b"snapshot, changed")
    with pytest.raises(BackupError, match="differs from"):
        verify_file(snap)


def test_a_member_is_restored_into_a_new_cluster_identity_with_its_data_kept() -> None:
    c = load(EXAMPLE)
    command = restore_command(c, c.etcd_hosts[1], "/tmp/s.db", "etcd-book-restored-1", "/var/lib/etcd.before")
    assert command.startswith("if [ -e /var/lib/etcd ]; then mv /var/lib/etcd /var/lib/etcd.before; fi && ")
    assert "--name k8s-2 " in command and "--initial-cluster-token etcd-book-restored-1 " in command
    assert "--initial-cluster k8s-1=https://192.168.10.11:2380,k8s-2=https://192.168.10.12:2380," in command
    assert "--initial-advertise-peer-urls https://192.168.10.12:2380 " in command
    assert "--bump-revision 1000000000 --mark-compacted" in command  # clients' caches re-list
    assert "rm -rf" not in command
