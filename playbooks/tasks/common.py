"""What every task does first: find the inventory, load it, or stop with every problem listed."""

from __future__ import annotations

import os
from pathlib import Path

from invoke.exceptions import Exit

from kubefab.pki.store import PKIError
from kubefab.playbooks import ui
from kubefab.playbooks.clusterdir import Prepared, prepare
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.inventory import ENV_VAR, validate
from kubefab.playbooks.model import Cluster
from kubefab.playbooks.secrets import SecretsError


def inventory_path(inventory: str | None) -> Path:
    """--inventory, else $KUBEFAB_INVENTORY."""
    chosen = inventory or os.environ.get(ENV_VAR)
    if not chosen:
        raise Exit(f"no inventory: pass --inventory FILE or set {ENV_VAR}", code=2)
    return Path(chosen)


def load_cluster(inventory: str | None) -> Cluster:
    verdict = validate(inventory_path(inventory))
    ui.problems(verdict.problems)
    if not verdict.ok:
        errors = sum(p.severity == "error" for p in verdict.problems)
        raise Exit(f"{verdict.path}: {errors} problem(s); nothing was changed", code=2)
    assert verdict.cluster is not None
    return verdict.cluster


def prepare_or_exit(cluster: Cluster, renew_all: bool = False) -> Prepared:
    """The plan inputs decided in memory (nothing written), or exit naming the file when the PKI or the secrets
    on disk are unusable."""
    try:
        return prepare(cluster, renew_all=renew_all)
    except (PKIError, SecretsError) as exc:
        raise Exit(str(exc), code=1) from None


def committed(prepared: Prepared) -> Inputs:
    """The inputs, with what they need written to the cluster directory, saying so (loudly for a new CA)."""
    writes = prepared.writes
    rows = prepared.commit()
    where = prepared.inputs.cluster.dir
    created = [r.identity for r in rows if r.action == "created" and r.identity.endswith(" CA")]
    if created:
        ui.out.print(f"created {', '.join(created)} in {where}: a new cluster identity", style="bold")
    if writes:
        ui.out.print(f"cluster directory {where}: wrote {len(writes)} file(s) (PKI, kubeconfigs, secrets)")
    return prepared.inputs
