"""`--limit HOST[,HOST]`: which hosts a deploy, plan or verify reads and changes, and what a limited run must
refuse because it only makes sense on every host at once. Pure: the inventory and the local PKI's decision in,
hosts or reasons out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kubefab.pki.store import Row
from kubefab.playbooks.model import Cluster, Host

# Phases that act on the cluster as a whole (through its API), not on hosts: left out of a limited deploy.
CLUSTER_WIDE = ("addons",)


class LimitError(ValueError):
    pass


def limited_hosts(c: Cluster, value: str | None) -> list[Host] | None:
    """The inventory's hosts named in `value`, in inventory order; None without a limit."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise LimitError("--limit names no host")
    known = {h.name for h in c.hosts}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LimitError(
            f"--limit: {', '.join(unknown)} not in the inventory {c.source}; hosts: {', '.join(sorted(known))}"
        )
    return [h for h in c.hosts if h.name in names]


def refusals(phases: Sequence[str], explicit: Iterable[str], rows: Iterable[Row], new_secrets: bool) -> list[str]:
    """Why a limited run cannot go ahead: a cluster-wide phase asked for by name (`explicit`, from --only), a
    certificate rotation (a CA created, a leaf reissued) or new cluster secrets, which every host that holds
    them has to receive together. A leaf issued for a new identity (a host joining) is fine: only that host
    uses it. (etcd membership is refused by preflight, which sees each host's etcd data.)"""
    out = [
        f"phase {p} is cluster-wide (it applies through the API, not to hosts): run it without --limit"
        for p in explicit
        if p in CLUSTER_WIDE and p in phases
    ]
    rotated = [
        f"{r.identity} ({r.action})"
        for r in rows
        if r.action.startswith("reissued")
        or (r.action in ("created", "imported") and (r.identity.endswith(" CA") or r.identity == "service-account"))
    ]
    if rotated:
        out.append(
            "the cluster directory's certificates change for every host that holds them ("
            + ", ".join(rotated)
            + "): a rotation is delivered to all hosts, so run without --limit"
        )
    if new_secrets:
        out.append("new cluster secrets would be generated: they go to every control-plane host, run without --limit")
    return out


def without_cluster_wide(phases: Sequence[str]) -> list[str]:
    return [p for p in phases if p not in CLUSTER_WIDE]
