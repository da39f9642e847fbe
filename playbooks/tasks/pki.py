"""`fab pki` (generate or refresh every certificate, key and kubeconfig; nothing remote) and
`kubefab certs.check` (expiry and inventory match report, of the cluster directory or, with --hosts, of what the
hosts hold)."""

import datetime as dt

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.pki import host_report
from kubefab.pki.host_report import HostRow
from kubefab.pki.report import check_rows
from kubefab.pki.store import PKIError, ensure
from kubefab.playbooks import ui
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.runner import DeployFailed
from kubefab.playbooks.tasks.common import load_cluster, prepare_or_exit
from kubefab.playbooks.tasks.deploy import runner

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


@task(
    auto_shortflags=False,
    help={
        **HELP,
        "hosts": "read the certificates on the hosts (over SSH, certificates only) instead of the cluster directory",
        "json": ui.JSON_HELP,
    },
)
def check(ctx: Context, inventory: str | None = None, hosts: bool = False, json_: bool = False) -> None:
    """Report days left for every certificate (in the cluster directory, or on the hosts with --hosts); exit 1
    if any needs attention."""
    cluster = load_cluster(inventory)
    rows = on_hosts(cluster) if hosts else check_rows(cluster)
    bad = [r for r in rows if r.status != "ok"]
    if json_:
        where = "hosts" if hosts else str(cluster.dir)
        ui.emit_json({"cluster": cluster.name, "read_from": where, "ok": not bad, "certificates": rows})
    elif hosts:
        ui.table(
            f"certificates on the hosts of {cluster.name} (renew within {cluster.certificates.renew_within_days} days)",
            ["file", "host", "subject", "expires", "days left", "status"],
            [(r.file, r.host, r.subject, ui.date(r.expires), r.days_left, r.status) for r in rows],
        )
    else:
        ui.table(
            f"certificates of {cluster.name} (renew within {cluster.certificates.renew_within_days} days)",
            ["identity", "file", "expires", "days left", "status"],
            [(r.identity, r.file, ui.date(r.expires), r.days_left, r.status) for r in rows],
        )
    if bad:
        raise Exit(
            f"{len(bad)} certificate(s) need attention: `kubefab pki` reissues leaves, then `kubefab deploy` "
            "delivers them",
            code=1,
        )
    if not json_:
        ui.out.print(f"all {len(rows)} certificates ok")


def on_hosts(cluster: Cluster) -> list[HostRow]:
    """Every host's certificates, read in one SSH round trip per host, all hosts at once."""
    inputs = prepare_or_exit(cluster).inputs  # the cluster directory's files, read; nothing written
    r = runner(cluster, inputs)
    now = dt.datetime.now(dt.UTC)

    def read(host: Host) -> list[HostRow]:
        out = r.run(host, "read certificates", host_report.read_command(host_report.held(cluster, host)))
        return host_report.rows(cluster, host, host_report.parse(out.stdout), inputs.credentials, now)

    try:
        found = r.each("certs.check", cluster.hosts, read)
    except DeployFailed as exc:
        raise Exit(f"certs.check --hosts: {exc}", code=1) from None
    finally:
        r.close(record=False)
    return [row for h in cluster.hosts for row in found[h.name]]


certs = Collection("certs")
certs.add_task(check)
