"""`fab verify`: run the testinfra suite (playbooks/hostsuite) against the inventory's hosts."""

import tempfile
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import ui
from kubefab.playbooks.limit import LimitError, limited_hosts
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.runner import DeployFailed, Runner
from kubefab.playbooks.tasks.common import inventory_path, load_cluster, prepare_or_exit
from kubefab.playbooks.tasks.deploy import runner, show_preflight
from kubefab.playbooks.verify import SUITE, pytest_args, ssh_config


def check_identity(cluster: Cluster, hosts: list[Host] | None, task: str = "verify") -> None:
    """Refuse to vouch for hosts that trust another CA than the cluster directory's (nothing is written)."""
    r = runner(cluster, prepare_or_exit(cluster).inputs, limit=hosts)
    try:
        findings = r.identity()
    except DeployFailed as exc:
        raise Exit(f"{task}: {exc}", code=1) from None
    finally:
        r.close(record=False)
    wrong = [f for f in findings if f.status == "fail"]
    if wrong:
        show_preflight(wrong)
        lines = "".join(f"\n  {f.host}: {f.detail}" for f in wrong)
        raise Exit(
            f"{task}: {len(wrong)} host(s) belong to another cluster directory; nothing was done:{lines}", code=1
        )


def connected(cluster: Cluster, task: str, hosts: list[Host] | None = None) -> Runner:
    """A runner over `hosts` (all by default) once they are known to trust the cluster directory's CA."""
    check_identity(cluster, hosts, task)
    return runner(cluster, prepare_or_exit(cluster).inputs, ui.host_line, limit=hosts)


@task(
    auto_shortflags=False,
    help={
        "inventory": "cluster YAML file (default: $KUBEFAB_INVENTORY)",
        "options": 'extra pytest options, e.g. "-k etcd -v"',
        "limit": "only these hosts (comma-separated names)",
    },
)
def verify(ctx: Context, inventory: str | None = None, options: str = "", limit: str | None = None) -> None:
    """Check every host: services enabled and running, ports, files and modes, certificates (testinfra)."""
    try:
        import pytest  # the suite's runner: loaded only by this task, so the other tasks start without it
    except ImportError:
        raise Exit("verify needs pytest and pytest-testinfra: pip install pytest pytest-testinfra", code=2) from None
    cluster = load_cluster(inventory)
    if not SUITE.is_dir():
        raise Exit(f"{SUITE}: the testinfra suite ships with the kubefab source tree; run from a checkout", code=2)
    try:
        hosts = limited_hosts(cluster, limit)
    except LimitError as exc:
        raise Exit(str(exc), code=2) from None
    check_identity(cluster, hosts)
    with tempfile.TemporaryDirectory(prefix="kubefab-verify-") as tmp:
        config = Path(tmp) / "ssh_config"
        config.write_text(ssh_config(cluster, Path(tmp)))
        args = pytest_args(cluster, config, inventory_path(inventory).resolve(), options.split(), hosts)
        ui.out.print(f"pytest {' '.join(args)}")
        code = pytest.main(args)
    if code != 0:
        raise Exit(f"verify: some checks failed on {cluster.name} (pytest exit {int(code)})", code=1)
    ui.out.print(f"verify: every check passed on {len(hosts or cluster.hosts)} hosts")
