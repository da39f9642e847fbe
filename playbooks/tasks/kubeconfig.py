"""`kubefab kubeconfig`: the admin kubeconfig of the cluster directory, or one for a named user with a
short-lived client certificate (pki.user), printed or written 0600."""

import sys
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.pki.store import PKIError, kubeconfig_dir, write_private
from kubefab.pki.user import MAX_HOURS, problems, user_kubeconfig
from kubefab.playbooks import ui
from kubefab.playbooks.tasks.common import load_cluster


@task(
    auto_shortflags=False,
    help={
        "inventory": "cluster YAML file (default: $KUBEFAB_INVENTORY)",
        "user": "a kubeconfig for this user instead of the admin: a new client certificate (CN=user) from the "
        "cluster's CA, not recorded anywhere",
        "group": "the user's groups (comma-separated; the certificate's O), e.g. dev,ops",
        "hours": f"how long the user's certificate is valid (default 24, at most {MAX_HOURS}): Kubernetes cannot "
        "revoke a client certificate, it can only expire",
        "out": "write it to this file (mode 0600) instead of printing it",
        "force": "replace an existing --out file",
    },
)
def kubeconfig(
    ctx: Context,
    inventory: str | None = None,
    user: str | None = None,
    group: str = "",
    hours: int = 24,
    out: str | None = None,
    force: bool = False,
) -> None:
    """Print (or write) the admin kubeconfig, or a short-lived one for --user."""
    cluster = load_cluster(inventory)
    target = Path(out) if out else None
    if target is not None and target.exists() and not force:
        raise Exit(f"{target}: exists; --force replaces it", code=2)
    if user is None:
        if group or hours != 24:
            raise Exit("--group and --hours are for --user: the admin kubeconfig is the cluster directory's", code=2)
        admin = kubeconfig_dir(cluster) / "admin.conf"
        if not admin.is_file():
            raise Exit(f"{admin}: no admin kubeconfig yet; `kubefab pki` (or deploy) writes it", code=1)
        content, note = admin.read_bytes(), f"admin kubeconfig of {cluster.name} ({admin})"
    else:
        groups = tuple(g.strip() for g in group.split(",") if g.strip())
        wrong = problems(user, groups, hours)
        if wrong:
            raise Exit("\n".join(wrong), code=2)
        try:
            made = user_kubeconfig(cluster, user, groups, hours)
        except PKIError as exc:
            raise Exit(str(exc), code=1) from None
        content = made.content
        note = (
            f"kubeconfig for user {user} (groups: {', '.join(groups) or 'none'}) valid until "
            f"{made.expires:%Y-%m-%d %H:%M} UTC; grant it access with RBAC (e.g. a RoleBinding to {user})"
        )
    if target is None:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        ui.err.print(note)
        return
    write_private(target, content)
    ui.out.print(f"wrote {target} (0600): {note}")
