"""`fab vagrant.inventory`: the Vagrant VMs' inventory, from the Vagrantfile and `vagrant ssh-config`."""

from __future__ import annotations

import os
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import ui
from kubefab.playbooks import vagrant as vms
from kubefab.playbooks.inventory import validate


@task(
    auto_shortflags=False,
    help={
        "out": "inventory file to write (default inventory/vagrant.yaml)",
        "vagrantfile": "the Vagrantfile the VMs were started from (default ./Vagrantfile)",
    },
)
def inventory(ctx: Context, out: str = "inventory/vagrant.yaml", vagrantfile: str = "Vagrantfile") -> None:
    """Write the VMs' inventory: IPs, VIP and interface from the Vagrantfile, user and keys from Vagrant."""
    source = Path(vagrantfile).resolve()
    try:
        settings = vms.settings(source.read_text(), os.environ)
    except (OSError, ValueError) as exc:
        raise Exit(str(exc), code=2) from None
    # VAGRANT_CWD / VAGRANT_VAGRANTFILE: the same machines whatever directory fab runs from.
    result = ctx.run(
        "vagrant ssh-config",
        hide=True,
        warn=True,
        env={"VAGRANT_CWD": str(source.parent), "VAGRANT_VAGRANTFILE": source.name},
    )
    try:
        data = vms.inventory(settings, vms.parse_ssh_config(result.stdout))
    except ValueError as exc:
        raise Exit(f"{exc}\n{result.stderr.strip()}".rstrip(), code=1) from None
    path = Path(out)
    path.write_text(vms.render(data))
    verdict = validate(path)
    ui.problems(verdict.problems)
    if not verdict.ok:
        raise Exit(f"{path}: written, but not valid (see above)", code=1)
    ui.out.print(
        f"{path}: {len(data['hosts'])} VMs, VIP {data['api']['vip']} on {data['api']['interface']}\n"
        f"  fab deploy --inventory {path}"
    )


vagrant = Collection("vagrant")
vagrant.add_task(inventory)
