"""`fab pki` (generate or refresh every certificate, key and kubeconfig; nothing remote) and
`kubefab certs.check` (expiry and inventory match report)."""

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.pki.report import check_rows
from kubefab.pki.store import PKIError, ensure
from kubefab.playbooks import ui
from kubefab.playbooks.tasks.common import load_cluster

HELP = {"inventory": "cluster YAML file (default: $KUBEFAB_INVENTORY)"}


@task(auto_shortflags=False, help=HELP)
def pki(ctx: Context, inventory: str | None = None) -> None:
    """Generate the cluster's CAs, certificates, keys and kubeconfigs on this machine (no host is touched)."""
    cluster = load_cluster(inventory)
    try:
        rows = ensure(cluster)
    except PKIError as exc:
        raise Exit(str(exc), code=1) from None
    ui.table(
        f"PKI of {cluster.name} in {cluster.dir}",
        ["identity", "file", "expires", "action"],
        [(r.identity, r.file, ui.date(r.expires), r.action) for r in rows],
    )
    changed = [r for r in rows if r.action != "kept"]
    issued = sum(r.action.startswith(("issued", "reissued")) for r in rows)
    ui.out.print(f"kept {len(rows) - len(changed)}, issued {issued}, other changes {len(changed) - issued}")


@task(auto_shortflags=False, help=HELP)
def check(ctx: Context, inventory: str | None = None) -> None:
    """Report days left and inventory match for every certificate; exit 1 if any needs attention."""
    cluster = load_cluster(inventory)
    rows = check_rows(cluster)
    ui.table(
        f"certificates of {cluster.name} (renew within {cluster.certificates.renew_within_days} days)",
        ["identity", "file", "expires", "days left", "status"],
        [(r.identity, r.file, ui.date(r.expires), r.days_left, r.status) for r in rows],
    )
    bad = [r for r in rows if r.status != "ok"]
    if bad:
        raise Exit(
            f"{len(bad)} certificate(s) need attention: `kubefab pki` reissues leaves, then `kubefab deploy` "
            "delivers them",
            code=1,
        )
    ui.out.print(f"all {len(rows)} certificates ok")


certs = Collection("certs")
certs.add_task(check)
