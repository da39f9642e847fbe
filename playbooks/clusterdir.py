"""The operator's side of a cluster: its directory holds the PKI and the secrets. `prepare` decides in memory what
a run needs there (creating what is missing, reissuing what no longer matches) and reads everything a plan needs;
`commit` writes it. `plan` never commits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubefab.pki.store import Decision, Row, assess
from kubefab.playbooks import bundle, secrets
from kubefab.playbooks.facts import Facts
from kubefab.playbooks.inputs import Inputs, stack_of
from kubefab.playbooks.model import Cluster


@dataclass(frozen=True)
class Prepared:
    inputs: Inputs
    pki: Decision
    secrets: secrets.Stored

    @property
    def writes(self) -> list[str]:
        """The files `commit` would write, relative to the cluster directory."""
        c = self.inputs.cluster
        out = [str(p.relative_to(c.dir)) for p in self.pki.writes]
        return [*out, secrets.FILE] if self.secrets.write is not None else out

    def commit(self) -> list[Row]:
        rows = self.pki.commit()
        self.secrets.commit(self.inputs.cluster)
        return rows


def prepare(
    c: Cluster, facts: Mapping[str, Facts] | None = None, arch: str | None = None, renew_all: bool = False
) -> Prepared:
    """Inputs for `c`: its PKI and secrets as they would be after this run (decided in memory, nothing written;
    every leaf reissued with `renew_all`), its versions, and the architecture of its bundle (amd64 when there is
    no bundle yet)."""
    pki = assess(c, renew_all=renew_all)
    stored = secrets.assess(c)
    manifest = bundle.read_manifest(c.bundle_dir)
    inputs = Inputs(
        c, stack_of(c), stored.secrets, pki.files(), arch or (manifest.arch if manifest else "amd64"), facts or {}
    )
    return Prepared(inputs, pki, stored)


def ensure_inputs(c: Cluster, facts: Mapping[str, Facts] | None = None, arch: str | None = None) -> Inputs:
    """`prepare`, committed: the PKI and secrets written to the cluster directory where they changed."""
    prepared = prepare(c, facts, arch)
    prepared.commit()
    return prepared.inputs
