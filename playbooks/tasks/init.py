"""`kubefab init`: write a commented starter inventory for a list of hosts (as `k0sctl init` does)."""

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import ui
from kubefab.playbooks.inventory import validate_text
from kubefab.playbooks.starter import StarterError, parse_hosts, starter


@task(
    auto_shortflags=False,
    help={
        "hosts": "comma-separated IP or NAME=IP, e.g. 10.0.0.11,10.0.0.12,10.0.0.13",
        "name": "the cluster name (default: the output file's name, or mycluster)",
        "vip": "the API's virtual IP, held by the first two hosts (three or more hosts)",
        "user": "SSH user (default: root)",
        "key": "SSH private key (default: the user's keys and agent)",
        "out": "the inventory file to write (default: print it)",
        "force": "replace an existing --out file",
    },
)
def init(
    ctx: Context,
    hosts: str = "",
    name: str | None = None,
    vip: str | None = None,
    user: str = "root",
    key: str | None = None,
    out: str | None = None,
    force: bool = False,
) -> None:
    """Write a commented starter inventory for the hosts given; it is validated before it is written."""
    target = Path(out) if out else None
    try:
        listed = parse_hosts(hosts)
        if vip is not None and len(listed) < 3:
            raise StarterError("--vip: needs three or more hosts (the first two hold it)")
    except StarterError as exc:
        raise Exit(str(exc), code=2) from None
    cluster = name or (target.stem if target else "mycluster")
    text = starter(cluster, listed, vip, user, key)
    verdict = validate_text(text, target or Path("inventory.yaml"))
    if not verdict.ok:
        ui.problems(verdict.problems)
        raise Exit("kubefab init: the inventory for these arguments is not valid; nothing was written", code=2)
    if target is None:
        ui.out.print(text, end="")
        return
    if target.exists() and not force:
        raise Exit(f"{target}: exists; --force replaces it", code=2)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    ui.out.print(f"wrote {target}: {len(listed)} hosts; next: kubefab inventory.check --inventory {target}")
