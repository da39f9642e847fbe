"""`fab inventory.check`: the verdict on an inventory and a table of its hosts and roles."""

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import ui
from kubefab.playbooks.inventory import validate
from kubefab.playbooks.model import ROLES, Cluster, Host
from kubefab.playbooks.tasks.common import inventory_path, load_cluster


@task(
    auto_shortflags=False,
    help={"inventory": "cluster YAML file (default: $KUBEFAB_INVENTORY)", "json": ui.JSON_HELP},
)
def check(ctx: Context, inventory: str | None = None, json_: bool = False) -> None:
    """Validate an inventory; print every problem, or the hosts and their roles."""
    if json_:
        verdict = validate(inventory_path(inventory))
        cluster = verdict.cluster
        ui.emit_json(
            {
                "inventory": str(verdict.path),
                "ok": verdict.ok,
                "problems": [ui.problem_json(p) for p in verdict.problems],
                "cluster": None if cluster is None or not verdict.ok else _summary(cluster),
            }
        )
        if not verdict.ok:
            raise Exit(code=2)
        return
    cluster = load_cluster(inventory)
    ui.table(
        f"{cluster.name}: Kubernetes {cluster.kubernetes_version}, API {cluster.server_url}",
        ["host", "ip", *ROLES, "ssh"],
        [[h.name, h.address, *("yes" if h.has(r) else "" for r in ROLES), _login(cluster, h)] for h in cluster.hosts],
    )
    ui.out.print(
        f"inventory OK: {len(cluster.hosts)} hosts, {len(cluster.etcd_hosts)} etcd members, "
        f"{len(cluster.control_plane)} control plane, {len(cluster.lb_hosts)} lb, "
        f"{len(cluster.workers)} nodes"
    )


def _summary(cluster: Cluster) -> dict[str, object]:
    return {
        "name": cluster.name,
        "kubernetes_version": cluster.kubernetes_version,
        "server": cluster.server_url,
        "cluster_dir": str(cluster.dir),
        "hosts": [
            {
                "name": h.name,
                "ip": str(h.address),
                "roles": [r for r in ROLES if h.has(r)],
                "ssh": _login(cluster, h),
            }
            for h in cluster.hosts
        ],
    }


def _login(cluster: Cluster, host: Host) -> str:
    ssh = cluster.ssh_for(host)
    via = f" via {ssh.bastion.user}@{ssh.bastion.host}:{ssh.bastion.port}" if ssh.bastion else ""
    return f"{ssh.user}@{cluster.ssh_address(host)}:{ssh.port}{via}" + (" (sudo)" if ssh.sudo else "")


ns = Collection("inventory")
ns.add_task(check)
