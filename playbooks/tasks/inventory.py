"""`fab inventory.check`: the verdict on an inventory and a table of its hosts and roles."""

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from kubefab.playbooks import ui
from kubefab.playbooks.model import ROLES, Cluster, Host
from kubefab.playbooks.tasks.common import load_cluster


@task(auto_shortflags=False, help={"inventory": "cluster YAML file (default: $KUBEFAB_INVENTORY)"})
def check(ctx: Context, inventory: str | None = None) -> None:
    """Validate an inventory; print every problem, or the hosts and their roles."""
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


def _login(cluster: Cluster, host: Host) -> str:
    ssh = cluster.ssh_for(host)
    via = f" via {ssh.bastion.user}@{ssh.bastion.host}:{ssh.bastion.port}" if ssh.bastion else ""
    return f"{ssh.user}@{cluster.ssh_address(host)}:{ssh.port}{via}" + (" (sudo)" if ssh.sudo else "")


ns = Collection("inventory")
ns.add_task(check)
