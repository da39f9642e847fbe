"""`fab audit`: the CIS-style security checks over what kubefab would deploy for an inventory."""

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import ui
from kubefab.playbooks.audit import audit_host, plans_for
from kubefab.playbooks.findings import Finding
from kubefab.playbooks.tasks.common import load_cluster, prepare_or_exit


@task(
    auto_shortflags=False,
    help={"inventory": "cluster YAML file (default: $KUBEFAB_INVENTORY)", "json": ui.JSON_HELP},
)
def audit(ctx: Context, inventory: str | None = None, json_: bool = False) -> None:
    """Check the rendered configuration against CIS-style rules; exit 1 on any failure."""
    cluster = load_cluster(inventory)
    inputs = prepare_or_exit(cluster).inputs  # read-only: nothing is written
    results = [r for h in cluster.hosts for r in audit_host(h.name, h.has("control_plane"), plans_for(inputs, h))]
    failed = [r for r in results if not r.ok]
    if json_:
        ui.emit_json({"cluster": cluster.name, "ok": not failed, "checks": [_result(r) for r in results]})
    else:
        ui.table(
            f"security audit of {cluster.name}",
            ["check", "host", "result", "detail"],
            [(r.check, r.host, _result(r)["result"], r.detail) for r in results],
        )
    if failed:
        raise Exit(f"{len(failed)} check(s) failed", code=1)
    if json_:
        return
    warned = sum(r.status == "warn" for r in results)
    exceptions = f" ({warned} documented exceptions)" if warned else ""
    ui.out.print(f"all {len(results)} checks passed on {len(cluster.hosts)} hosts{exceptions}")


def _result(r: Finding) -> dict[str, str]:
    result = {"ok": "pass", "warn": "warn"}.get(r.status, "FAIL")
    return {"check": r.check, "host": r.host, "result": result, "detail": r.detail}
