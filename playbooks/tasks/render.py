"""`fab render`: every file of every host, written to a directory (nothing remote is touched)."""

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import tree, ui
from kubefab.playbooks.components import host_plans
from kubefab.playbooks.components.addons import AddonError, manifests
from kubefab.playbooks.tasks.common import committed, load_cluster, prepare_or_exit


@task(
    auto_shortflags=False,
    help={
        "inventory": "cluster YAML file (default: $KUBEFAB_INVENTORY)",
        "out": "directory to write (one tree per host, plus addons/ and plans/)",
    },
)
def render(ctx: Context, inventory: str | None = None, out: str = "out") -> None:
    """Render every host's files (certificates included) and the add-on manifests into OUT, emptied first; the
    cluster directory's PKI and secrets are created or brought up to date as deploy would."""
    cluster = load_cluster(inventory)
    try:
        tree.clear(Path(out))
    except tree.NotOurs as exc:
        raise Exit(str(exc), code=2) from None
    inputs = committed(prepare_or_exit(cluster))
    try:
        addons = manifests(inputs, cluster.bundle_dir)
    except AddonError as exc:
        addons = {}
        ui.err.print(f"add-ons not rendered: {exc}")
    plans = {h.name: host_plans(inputs, h) for h in cluster.hosts}
    count = tree.write(Path(out), plans, addons)
    ui.table(
        f"rendered {cluster.name} (Kubernetes {inputs.stack.kubernetes}) into {out}",
        ["host", "roles", "files", "binaries", "services"],
        [
            (
                h,
                ",".join(cluster.host(h).roles),
                sum(len(p.files) + len(p.blocks) for p in ps),
                sum(len(p.binaries) for p in ps),
                " ".join(s for p in ps for s in p.services),
            )
            for h, ps in plans.items()
        ],
    )
    ui.out.print(f"{count} files written; per-host manifests in {Path(out) / 'plans'}")
