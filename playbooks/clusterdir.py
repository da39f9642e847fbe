"""The operator's side of a cluster: its directory holds the PKI and the secrets. `ensure_inputs` creates
them there when missing (the only writer), then reads everything a plan needs."""

from __future__ import annotations

from collections.abc import Mapping

from pki.store import ensure
from playbooks import bundle, secrets
from playbooks.facts import Facts
from playbooks.inputs import Inputs, read_cluster_files, stack_of
from playbooks.model import Cluster


def ensure_inputs(c: Cluster, facts: Mapping[str, Facts] | None = None, arch: str | None = None) -> Inputs:
    """Inputs for `c`: its PKI and secrets (created in its cluster directory if missing), its versions, and the
    architecture of its bundle (amd64 when there is no bundle yet)."""
    ensure(c)
    manifest = bundle.read_manifest(c.bundle_dir)
    return Inputs(
        c,
        stack_of(c),
        secrets.ensure(c),
        read_cluster_files(c),
        arch or (manifest.arch if manifest else "amd64"),
        facts or {},
    )
