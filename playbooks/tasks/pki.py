"""`fab pki` (generate or refresh every certificate, key and kubeconfig; nothing remote) and
`kubefab certs.check` (expiry and inventory match report, of the cluster directory or, with --hosts, of what the
hosts hold)."""

import datetime as dt
import time

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.pki import host_report, rotation
from kubefab.pki.host_report import HostRow
from kubefab.pki.report import check_rows
from kubefab.pki.store import PKIError, ensure
from kubefab.playbooks import ca_rotation, renewal, ui
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.remote import STOP, StepFailed, stop_on_interrupt
from kubefab.playbooks.runner import PHASES, DeployFailed
from kubefab.playbooks.tasks.common import committed, load_cluster, prepare_or_exit
from kubefab.playbooks.tasks.deploy import prepared, run_preflight, runner
from kubefab.playbooks.upgrader import Upgrader

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


@task(
    auto_shortflags=False,
    help={
        **HELP,
        "all": "reissue every leaf, not only those expiring within certificates.renew_within_days",
        "command_timeout": "seconds before a command on a host counts as failed (default 300)",
    },
)
def renew(ctx: Context, inventory: str | None = None, all_: bool = False, command_timeout: int = 300) -> None:
    """Reissue expiring leaves (every leaf with --all; keys and CAs kept) and roll them out host by host, the API
    answering throughout."""
    phases = [p for p in PHASES if p != "preflight"]
    ready = prepared(inventory, phases, renew_all=all_)
    cluster, prep = ready.cluster, ready.prep
    renewed = [row for row in prep.pki.rows if row.action.startswith("reissued")]
    if not renewed:
        ui.out.print(f"nothing to renew: no leaf expires within {cluster.certificates.renew_within_days} days")
        return

    r = runner(cluster, prep.inputs, ui.host_line, command_timeout=command_timeout)
    started = time.monotonic()
    try:
        run_preflight(r)
        committed(prep)
        for row in renewed:
            ui.out.print(f"{row.file}: {row.action}")
        renewal.roll_out(r, Upgrader(r, ui.host_line))
    except (DeployFailed, StepFailed) as exc:
        raise Exit(
            f"certs.renew stopped: {exc}\nrun it again, or `kubefab deploy`: both deliver what is left", code=1
        ) from None
    finally:
        r.close()
    ui.out.print(f"renewed {len(renewed)} certificate(s) in {time.monotonic() - started:.1f} s")


@task(
    name="rotate-ca",
    auto_shortflags=False,
    help={
        **HELP,
        "ca": "comma-separated CAs to rotate: kubernetes, etcd, front-proxy (default: all three)",
        "command_timeout": "seconds before a command on a host counts as failed (default 300)",
    },
)
def rotate_ca(
    ctx: Context, inventory: str | None = None, ca: str = "kubernetes,etcd,front-proxy", command_timeout: int = 300
) -> None:
    """Replace CAs with new ones, the API answering throughout: trust both, reissue every leaf from the new one,
    retire the old one (kept under pki/retired/). Interrupted, run it again: it goes on from where it stopped."""
    phases = [p for p in PHASES if p != "preflight"]
    cluster = load_cluster(inventory)
    try:
        cas = ca_rotation.selected(cluster, [n.strip() for n in ca.split(",") if n.strip()])
    except ca_rotation.RotationError as exc:
        raise Exit(f"certs.rotate-ca: {exc}", code=2) from None
    kubernetes = any(a.name == "kubernetes" for a in cas)
    stage = ca_rotation.stage_of(cluster, cas)
    done: list[ca_rotation.Step] = []

    def deliver(step: str, reached: rotation.Stage) -> None:
        started = time.monotonic()
        ui.out.print(f"certs.rotate-ca: {step}", style="bold")
        ready = prepared(inventory, phases)
        r = runner(ready.cluster, ready.prep.inputs, ui.host_line, command_timeout=command_timeout)
        again = "run it again: it goes on from there"
        with stop_on_interrupt():  # Ctrl-C: the command under way finishes, then it stops saying where
            try:
                run_preflight(r, show=False)
                committed(ready.prep)
                renewal.roll_out(r, Upgrader(r, ui.host_line))
                if reached == "trust" and kubernetes and cluster.addons:
                    ca_rotation.refresh_in_cluster(r, cluster, ui.host_line)
            except (DeployFailed, StepFailed, ca_rotation.RotationError) as exc:
                raise Exit(f"certs.rotate-ca stopped at {step!r}: {exc}\n{again}", 1) from None
            except KeyboardInterrupt:
                STOP.clear()  # the closing commands (the restarts still owed, recorded on each host) run
                raise Exit(f"certs.rotate-ca interrupted at {step!r}\n{again}", 1) from None
            finally:
                r.close()
        done.append(ca_rotation.Step(step, time.monotonic() - started))

    names = ", ".join(a.name for a in cas)
    if stage == "idle":
        prepared(inventory, phases)  # everything checked before the first file is written
    else:  # what the last run wrote here may not have reached every host
        deliver(f"{ca_rotation.STEPS[stage]} ({names}), resumed", stage)
    while True:
        stage = ca_rotation.advance(cluster, cas, stage)
        deliver(f"{ca_rotation.STEPS[stage]} ({names})", stage)
        if stage == "idle":
            break
    ui.table(f"certs.rotate-ca of {cluster.name}", ["step", "seconds"], [(d.name, f"{d.seconds:.1f}") for d in done])
    ui.out.print(
        f"rotated {names} in {sum(d.seconds for d in done):.1f} s; "
        f"the old CA is kept under {cluster.dir / 'pki' / rotation.RETIRED}"
    )


certs = Collection("certs")
certs.add_task(check)
certs.add_task(renew)
certs.add_task(rotate_ca)
