"""What every task does first: find the inventory, load it, or stop with every problem listed."""

from __future__ import annotations

import os
from pathlib import Path

from invoke.exceptions import Exit

from pki.store import PKIError
from playbooks import ui
from playbooks.clusterdir import Prepared, prepare
from playbooks.inputs import Inputs
from playbooks.inventory import ENV_VAR, validate
from playbooks.model import Cluster
from playbooks.secrets import SecretsError


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


def prepare_or_exit(cluster: Cluster) -> Prepared:
    """The plan inputs decided in memory (nothing written), or exit naming the file when the PKI or the secrets
    on disk are unusable."""
    try:
        return prepare(cluster)
    except (PKIError, SecretsError) as exc:
        raise Exit(str(exc), code=1) from None


def committed(prepared: Prepared) -> Inputs:
    """The inputs, with what they need written to the cluster directory, said when it creates a CA."""
    rows = prepared.commit()
    created = [r.identity for r in rows if r.action == "created" and r.identity.endswith(" CA")]
    if created:
        ui.out.print(f"created {', '.join(created)} in {prepared.inputs.cluster.dir} (a new cluster identity)")
    return prepared.inputs
