"""`kubefab upgrade`: the inventory's kubernetes_version (and etcd's) rolled out to a running cluster in the
book's order (playbooks.upgrade decides, playbooks.upgrader carries it out); `--plan` shows it and changes
nothing."""

from __future__ import annotations

import time

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import etcd_backup, ui, upgrade
from kubefab.playbooks.remote import STOP, StepFailed, stop_on_interrupt
from kubefab.playbooks.runner import PHASES, DeployFailed
from kubefab.playbooks.tasks.common import committed, inventory_path
from kubefab.playbooks.tasks.deploy import INVENTORY_HELP, prepared, run_preflight, runner, summary
from kubefab.playbooks.upgrader import UpgradeFailed, Upgrader


@task(
    auto_shortflags=False,
    help={
        "inventory": INVENTORY_HELP,
        "plan": "show the stages, hosts and versions before and after; change nothing",
        "batch": "nodes upgraded at a time (default 1)",
        "drain_timeout": "seconds a node's drain may take before the upgrade stops, naming the pods left (default 300)",
        "verbose": "show every command run on the hosts",
        "command_timeout": "seconds before a command on a host counts as failed (default 300)",
    },
)
def upgrade_task(
    ctx: Context,
    inventory: str | None = None,
    plan: bool = False,
    batch: int = 1,
    drain_timeout: int = 300,
    verbose: bool = False,
    command_timeout: int = 300,
) -> None:
    """Upgrade a running cluster to the inventory's versions, one host at a time; a re-run continues."""
    if batch < 1:
        raise Exit("--batch: at least 1", code=2)
    phases = [p for p in PHASES if p != "preflight"]
    ready = prepared(inventory, phases)
    cluster, prep = ready.cluster, ready.prep
    stack, source = prep.inputs.stack, str(inventory_path(inventory))

    r = runner(cluster, prep.inputs, ui.host_line, verbose, command_timeout)
    started = time.monotonic()
    current: upgrade.Stage | None = None  # the stage under way, for what an interruption may leave
    with stop_on_interrupt():  # Ctrl-C: the command under way finishes, then it stops saying where
        try:
            run_preflight(r, upgrading=True)
            refused = upgrade.skew_problems(cluster, r.facts, stack, source)
            if refused:
                raise Exit("upgrade refused; nothing was changed:\n" + "\n".join(f"  {p}" for p in refused), code=1)
            stages = upgrade.stages(cluster, upgrade.moves(cluster, r.facts, stack), batch)
            ui.table(
                f"upgrade of {cluster.name} to Kubernetes {stack.kubernetes}, etcd {stack.etcd}",
                ["#", "stage", "host", "service", "from", "to"],
                [(i, s.kind, m.host, m.service, m.current, m.target) for i, s in enumerate(stages, 1) for m in s.moves],
            )
            if plan:
                ui.out.print(f"{len(stages)} stage(s) would run" if stages else "nothing to upgrade")
                return
            committed(prep)
            u = Upgrader(r, ui.host_line, drain_timeout)
            for name in u.restore_service(stack.kubernetes):
                ui.out.print(f"{name}: uncordoned (left cordoned by an interrupted upgrade)")
            if not stages:
                ui.out.print(f"nothing to upgrade: every service runs Kubernetes {stack.kubernetes}, etcd {stack.etcd}")
                return
            problems = u.health()
            if problems:
                raise Exit(
                    "upgrade: the cluster is not ready for it; nothing was changed:\n"
                    + "\n".join(f"  {p}" for p in problems),
                    code=1,
                )
            for warning in u.warnings():
                ui.out.print(f"warning: {warning}", style="yellow")
            snap = etcd_backup.snapshot(r, etcd_backup.backups_dir(cluster), f"before-{stack.kubernetes}")
            ui.out.print(f"etcd snapshot {snap.path}: revision {snap.revision}, {snap.keys} keys, sha256 {snap.sha256}")
            for i, stage in enumerate(stages, 1):
                ui.out.print(f"== {i}/{len(stages)} {stage.title} ({time.strftime('%H:%M:%S')})", style="bold")
                current = stage
                u.run(stage)
            current = None
            ui.out.print("== converge: every phase, as deploy", style="bold")
            for name in phases:
                r.phase(name)
        except (UpgradeFailed, etcd_backup.BackupError, StepFailed) as exc:
            raise Exit(
                f"upgrade stopped: {exc}\nfix the cause and run `kubefab upgrade --inventory {source}` again: it "
                "continues from the versions the cluster runs",
                code=1,
            ) from None
        except DeployFailed as exc:
            summary(r.results, cluster)
            raise Exit(f"upgrade stopped in the converge: {exc}", code=1) from None
        except KeyboardInterrupt:
            STOP.clear()  # the closing commands (the restarts still owed, recorded on each host) run
            raise Exit(upgrade.interrupted(current, source), code=1) from None
        finally:
            r.close()
    ui.table(
        f"upgrade of {cluster.name}",
        ["stage", "host", "service", "from", "to", "stage s"],
        [
            (d.stage.kind, m.host, m.service, m.current, m.target, f"{d.seconds:.1f}")
            for d in u.done
            for m in d.stage.moves
        ],
    )
    ui.out.print(
        f"upgrade finished in {time.monotonic() - started:.1f} s: Kubernetes {stack.kubernetes}, etcd {stack.etcd}"
    )
