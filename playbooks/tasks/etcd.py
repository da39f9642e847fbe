"""`kubefab etcd.backup` (a checked snapshot into the cluster directory) and `kubefab etcd.restore SNAPSHOT`
(`--check`: a rehearsal on this machine; `--yes`: every member restored). The work is in playbooks.etcd_backup."""

from __future__ import annotations

from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import etcd_backup, ui
from kubefab.playbooks.remote import StepFailed
from kubefab.playbooks.runner import DeployFailed
from kubefab.playbooks.tasks.common import load_cluster, prepare_or_exit
from kubefab.playbooks.tasks.deploy import INVENTORY_HELP
from kubefab.playbooks.tasks.verify import connected


@task(
    auto_shortflags=False,
    help={
        "inventory": INVENTORY_HELP,
        "out": "the directory to keep it in (default: backups/ in the cluster directory)",
        "keep": "keep only the N newest snapshots there (default: keep all)",
    },
)
def backup(ctx: Context, inventory: str | None = None, out: str | None = None, keep: int = 0) -> None:
    """Take an etcd snapshot from a healthy member, check it, and keep it with its SHA-256."""
    if keep < 0:
        raise Exit("--keep: 0 (keep all) or more", code=2)
    r = connected(load_cluster(inventory), "etcd.backup")
    directory = Path(out) if out else etcd_backup.backups_dir(r.cluster)
    try:
        snap = etcd_backup.snapshot(r, directory)
    except (StepFailed, DeployFailed, etcd_backup.BackupError) as exc:
        raise Exit(f"etcd.backup: {exc}", code=1) from None
    finally:
        r.close(record=False)
    ui.out.print(f"etcd snapshot {snap.path}: revision {snap.revision}, {snap.keys} keys, sha256 {snap.sha256}")
    for gone in etcd_backup.prune(directory, keep) if keep else ():
        ui.out.print(f"removed {gone} (--keep {keep})")


@task(
    auto_shortflags=False,
    help={
        "inventory": INVENTORY_HELP,
        "check": "restore into a scratch directory on this machine and report its revision and key count; the "
        "cluster is not touched",
        "yes": "restore every member (the apiservers and etcd are stopped; each member's data is moved aside)",
    },
)
def restore(ctx: Context, snapshot: str, inventory: str | None = None, check: bool = False, yes: bool = False) -> None:
    """Restore etcd from SNAPSHOT: rehearse it with --check, or restore every member with --yes."""
    path = Path(snapshot)
    if not path.is_file():
        raise Exit(f"{path}: no such snapshot", code=2)
    if check == yes:
        raise Exit("etcd.restore: pass --check (a rehearsal) or --yes (restore the cluster from it)", code=2)
    cluster = load_cluster(inventory)
    inputs = prepare_or_exit(cluster).inputs
    try:
        digest = etcd_backup.verify_file(path)
        if check:
            found = etcd_backup.rehearse(cluster, path, inputs.stack.etcd, inputs.arch)
            ui.out.print(
                f"{path} (sha256 {digest}) restores to revision {found['revision']} with {found['keys']} keys; "
                "the cluster was not touched"
            )
            return
        r = connected(cluster, "etcd.restore")
        try:
            aside = etcd_backup.restore(r, path, lambda text: ui.out.print(f"  {text}"))
            r.phase("control-plane")  # its checks: every apiserver ready again
        finally:
            r.close()
    except (StepFailed, DeployFailed, etcd_backup.BackupError) as exc:
        raise Exit(f"etcd.restore: {exc}", code=1) from None
    ui.out.print(f"etcd restored from {path} on {len(cluster.etcd_hosts)} members; their former data is in {aside}")


etcd = Collection("etcd")
etcd.add_task(backup)
etcd.add_task(restore)
