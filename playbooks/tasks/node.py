"""`kubefab node.remove NAME`: a host taken out of the running cluster (playbooks.removal), then out of the
inventory, whose deploy then tells the hosts left. Without --yes it lists the steps and changes nothing."""

from __future__ import annotations

import os
import time

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.pki.store import retire_host
from kubefab.playbooks import removal, ui
from kubefab.playbooks.remote import StepFailed
from kubefab.playbooks.runner import DeployFailed
from kubefab.playbooks.tasks import deploy
from kubefab.playbooks.tasks.common import inventory_path, load_cluster
from kubefab.playbooks.tasks.verify import check_identity, connected


@task(
    auto_shortflags=False,
    help={
        "name": "the host to remove (as the inventory names it)",
        "inventory": deploy.INVENTORY_HELP,
        "yes": "remove it; without it, the steps are listed and nothing changes",
        "drain_timeout": "seconds its drain may take before the removal stops, naming the pods left (default 300)",
        "verbose": "show every command run on the hosts",
        "command_timeout": "seconds before a command on a host counts as failed (default 300)",
    },
)
def remove(
    ctx: Context,
    name: str,
    inventory: str | None = None,
    yes: bool = False,
    drain_timeout: int = 300,
    verbose: bool = False,
    command_timeout: int = 300,
) -> None:
    """Drain a host, take it out of HAProxy and etcd, clean it, drop it from the inventory and deploy the rest."""
    cluster = load_cluster(inventory)
    path = inventory_path(inventory)
    if name not in {h.name for h in cluster.hosts}:
        raise Exit(f"{path}: no host named {name}; hosts: {', '.join(h.name for h in cluster.hosts)}", code=2)
    text = path.read_text()
    try:
        edited = removal.inventory_without(text, name)
    except removal.RemovalError as exc:
        raise Exit(f"{path}: {exc}; nothing was changed", code=2) from None
    refused = removal.refusals(cluster, name, edited)
    if refused:
        raise Exit("node.remove refused; nothing was changed:\n" + "\n".join(f"  {r}" for r in refused), code=2)
    gone = cluster.host(name)
    r = connected(cluster, "node.remove", [h for h in cluster.hosts if h != gone])
    rm = removal.Remover(r, gone, ui.host_line, drain_timeout)
    seconds: list[tuple[str, str]] = []
    try:
        if rm.reach():
            check_identity(cluster, [gone], "node.remove")  # never clean a host of another cluster
        live = rm.live_refusals()
        if live:
            raise Exit("node.remove refused; nothing was changed:\n" + "\n".join(f"  {x}" for x in live), code=1)
        if not yes:
            for title, step in rm.steps():
                ui.host_line(name, f"would: {title}: {(step.__doc__ or '').split(':')[0].strip()}")
            ui.host_line(name, f"would: take it out of {path}, then deploy the hosts left")
            raise Exit("node.remove: nothing was changed; give --yes to remove it", code=2)
        for title, step in rm.steps():
            ui.out.print(f"== {title}", style="bold")
            began = time.monotonic()
            step()
            seconds.append((title, f"{time.monotonic() - began:.1f}"))
    except (removal.RemovalError, StepFailed, DeployFailed) as exc:
        raise Exit(
            f"node.remove stopped: {exc}\nfix the cause and run `kubefab node.remove {name}` again: it continues",
            code=1,
        ) from None
    finally:
        r.close(record=False)
    kept = cluster.dir / f"inventory-before-removing-{name}.yaml"
    kept.write_text(text)
    partial = path.with_name(f".{path.name}.kubefab")
    partial.write_text(edited)
    os.chmod(partial, path.stat().st_mode & 0o777)
    partial.replace(path)
    ui.out.print(f"{path}: {name} taken out (the text before is kept in {kept})")
    retired = retire_host(cluster, name)
    if retired is not None:
        ui.out.print(f"{name}'s certificates and kubelet kubeconfig moved to {retired}")
    ui.table(f"removal of {name}", ["step", "s"], seconds)
    ui.out.print("== deploy of the hosts left", style="bold")
    deploy.deploy(ctx, inventory=str(path), verbose=verbose, command_timeout=command_timeout)


node = Collection("node")
node.add_task(remove)
