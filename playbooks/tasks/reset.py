"""`kubefab reset [--limit] [--delete-data] --yes`: every host (or the named ones) taken back to before kubefab.
Without --yes it lists what would be removed and changes nothing. The steps are in playbooks.reset."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import reset as resets
from kubefab.playbooks import ui
from kubefab.playbooks.apply import Assessment, execute
from kubefab.playbooks.limit import LimitError, limited_hosts
from kubefab.playbooks.model import Host
from kubefab.playbooks.plan import Plan, Step
from kubefab.playbooks.runner import DeployFailed
from kubefab.playbooks.tasks.common import load_cluster
from kubefab.playbooks.tasks.deploy import INVENTORY_HELP
from kubefab.playbooks.tasks.verify import connected


@task(
    auto_shortflags=False,
    help={
        "inventory": INVENTORY_HELP,
        "limit": "only these hosts (comma-separated names)",
        "delete_data": "remove etcd's data too (kept by default)",
        "yes": "reset the hosts; without it, what would be removed is listed and nothing changes",
    },
)
def reset(
    ctx: Context, inventory: str | None = None, limit: str | None = None, delete_data: bool = False, yes: bool = False
) -> None:
    """Stop and remove everything kubefab installed on the hosts; OS packages stay, etcd data unless --delete-data."""
    cluster = load_cluster(inventory)
    try:
        hosts = limited_hosts(cluster, limit)
    except LimitError as exc:
        raise Exit(f"--limit: {exc}", code=2) from None
    r = connected(cluster, "reset", hosts)
    inputs = r.inputs

    def steps(host: Host) -> list[Step]:
        return list(resets.steps(inputs, host, delete_data))

    def owed(host: Host) -> list[Step]:
        return [s for s in steps(host) if not r.run(host, f"reset: check {s.name}", s.unless, check=False).ok]

    try:
        if not yes:
            pending = r.each("reset", r.hosts, owed)
            for name, todo in pending.items():
                for s in todo:
                    ui.host_line(name, f"would: {s.name}")
            if any(pending.values()):
                raise Exit("reset: nothing was changed; give --yes to reset these hosts", code=2)
            ui.out.print(f"reset: nothing to remove on {len(pending)} host(s)")
            return

        def carry_out(host: Host) -> list[str]:
            # Every step, each checked as it comes: one step's work can leave work for a later one.
            found = Assessment(steps=steps(host))
            changed = execute(r.remote(host), Plan(host.name, "reset"), found, r.bundle).changed
            for what in changed:
                ui.host_line(host.name, what.removeprefix("step "))
            return changed

        done = r.each("reset", r.hosts, carry_out)
    except DeployFailed as exc:
        raise Exit(f"reset: {exc}", code=1) from None
    finally:
        r.close(record=False)
    count = sum(len(v) for v in done.values())
    kept = "" if delete_data else "; etcd data kept (--delete-data removes it)"
    ui.out.print(f"reset: {len(done)} host(s), {count} change(s){kept}")
