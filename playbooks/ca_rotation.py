"""`kubefab certs.rotate-ca`, carried out in three steps, each rolled out the way certs.renew rolls out (one host
at a time, apiservers out of HAProxy while they restart) before the next begins:

1. trust: a new CA is created and every host, kubeconfig and in-cluster client is given both CAs; the add-ons
   that call the API are restarted so that they read the bundle (they read their CA file once, at start);
2. reissue: the new CA becomes the CA: every leaf it did not sign is reissued from it (keys kept) and rolled out;
3. retire: the old CA is no longer trusted anywhere (a copy stays under pki/retired/).

The step a cluster is at lives in its directory's files (pki.rotation), so an interrupted run is run again: it
first rolls out what the last run left locally, then goes on. Service-account tokens stay valid throughout:
they are signed with the service-account key, which is not a CA and is not rotated."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kubefab.pki import rotation
from kubefab.pki.profiles import CA, authorities
from kubefab.pki.store import pair_files, pki_dir
from kubefab.playbooks.components.control_plane import kubectl
from kubefab.playbooks.model import Cluster
from kubefab.playbooks.runner import Runner

# The step that leaves the cluster at each stage, in order.
STEPS: dict[rotation.Stage, str] = {
    "trust": "trust both CAs",
    "reissue": "reissue from the new CA",
    "idle": "retire the old CA",
}
NEXT: dict[rotation.Stage, rotation.Stage] = {"idle": "trust", "trust": "reissue", "reissue": "idle"}
# Where kubefab's add-ons run: their Deployments and DaemonSets are restarted once the cluster trusts both CAs.
ADDON_NAMESPACES = ("kube-system", "kube-flannel")
ROOT_CA_WAIT = 120  # seconds for the controller-manager to publish the bundle as kube-root-ca.crt


class RotationError(Exception):
    pass


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float


def selected(c: Cluster, names: Sequence[str]) -> list[CA]:
    """The CAs to rotate, one per file (with `authorities: single` the three names are one CA); the Kubernetes CA
    first. Raises RotationError naming an unknown name, an imported CA, or CAs caught at different steps by an
    earlier run."""
    known = {ca.name: ca for ca in authorities(c)}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RotationError(f"unknown CA {', '.join(unknown)}: choose from {', '.join(known)}")
    by_file: dict[str, CA] = {}
    for ca in authorities(c):
        if ca.name in names:
            by_file.setdefault(ca.file, ca)
    out = list(by_file.values())
    imported = [ca.name for ca in out if getattr(c.certificates.import_ca, ca.name.replace("-", "_")) is not None]
    if imported:
        raise RotationError(
            f"{c.source}: the {', '.join(imported)} CA is imported (certificates.import_ca): kubefab rotates only "
            "the CAs it created; import the new one instead"
        )
    stages = {ca.name: rotation.stage(c, ca) for ca in out}
    if len(set(stages.values())) > 1:
        where = ", ".join(f"{name}: {stage}" for name, stage in stages.items())
        raise RotationError(f"the CAs are at different rotation steps ({where}): rotate them one at a time")
    return out


def stage_of(c: Cluster, cas: Sequence[CA]) -> rotation.Stage:
    return rotation.stage(c, cas[0])


def advance(c: Cluster, cas: Sequence[CA], stage: rotation.Stage) -> rotation.Stage:
    """The cluster directory's side of the step after `stage` (hosts are untouched); the stage it leaves."""
    for ca in cas:
        {"idle": rotation.begin, "trust": rotation.swap, "reissue": rotation.finish}[stage](c, ca)
    return NEXT[stage]


def refresh_in_cluster(r: Runner, c: Cluster, log: Callable[[str, str], None]) -> None:
    """Once every host trusts both Kubernetes CAs: wait for the controller-manager to publish them to pods
    (the kube-root-ca.crt ConfigMaps), then restart the add-ons so that they read them."""
    host = c.control_plane[0]
    incoming = pair_files(pki_dir(c) / "ca.next")[0].read_text().strip()
    deadline = time.monotonic() + ROOT_CA_WAIT
    while True:
        out = r.run(
            host, "rotate-ca: read kube-root-ca.crt", kubectl("-n kube-system get configmap kube-root-ca.crt -o json")
        )
        if incoming in out.stdout.replace("\\n", "\n"):
            break
        if time.monotonic() > deadline:
            raise RotationError(f"kube-root-ca.crt did not list the new CA within {ROOT_CA_WAIT} s")
        time.sleep(2)
    for ns in ADDON_NAMESPACES:
        names = r.run(host, f"rotate-ca: list {ns}", kubectl(f"-n {ns} get deployments,daemonsets -o name")).stdout
        for name in names.split():
            r.run(host, f"rotate-ca: restart {name}", kubectl(f"-n {ns} rollout restart {name}"))
        for name in names.split():
            r.run(host, f"rotate-ca: wait for {name}", kubectl(f"-n {ns} rollout status {name} --timeout=300s"))
            log(host.name, f"{ns}/{name} restarted: it trusts both CAs")
