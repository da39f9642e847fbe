"""The add-ons' images on every node, without a registry: the bundle's OCI archives sent to the node and
imported into containerd's Kubernetes namespace, each only when containerd does not already hold the image
under its reference with the same digest (a re-run changes nothing). With a private registry
(`registry.url`) nothing is imported: nodes pull through the registry mirrors."""

from __future__ import annotations

import re
import shlex

from kubefab.playbooks.bundle import image_path, read_manifest, required_images
from kubefab.playbooks.component import Component
from kubefab.playbooks.components.binaries import KUBE_BIN
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Binary, Plan, Step

IMAGES_DIR = "/var/lib/kubefab/images"
CTR = f"{KUBE_BIN}/ctr --namespace k8s.io"


def archive_name(ref: str) -> str:
    """registry.k8s.io/coredns/coredns:v1.14.6 -> registry.k8s.io_coredns_coredns_v1.14.6.oci.tar"""
    return re.sub(r"[^A-Za-z0-9._-]", "_", ref) + ".oci.tar"


def held(ref: str, digest: str) -> str:
    """Shell: containerd holds `ref` and it is the image with `digest`."""
    return f"{CTR} images ls {shlex.quote('name==' + ref)} | awk 'NR > 1 {{print $3}}' | grep -qx {shlex.quote(digest)}"


def plan(inputs: Inputs, host: Host) -> Plan | None:
    c = inputs.cluster
    bundle = c.bundle_dir
    manifest = read_manifest(bundle)
    binaries, steps = [], []
    for ref in required_images(c, inputs.stack, bundle):
        entry = manifest.files.get(image_path(ref, inputs.arch)) if manifest else None
        if entry is None or not entry.digest:
            continue  # the bundle check before the deploy names what is missing
        path = f"{IMAGES_DIR}/{archive_name(ref)}"
        binaries.append(Binary(entry.path, None, path, mode=0o644))
        steps.append(
            Step(
                f"image {ref} in containerd",
                unless=held(ref, entry.digest),
                run=f"{CTR} images import --platform linux/{inputs.arch} {shlex.quote(path)} >/dev/null",
            )
        )
    if not steps:
        return None
    return Plan(host.name, "images", binaries=tuple(binaries), steps=tuple(steps))


def importing(c: Cluster) -> tuple[Host, ...]:
    """The workers, unless a private registry serves the images."""
    return () if c.registry.url or not c.addons else c.workers


# Before the add-ons that run them: the add-ons phase applies every host's plan before its manifests.
IMAGES = Component("images", phase="addons", hosts=importing, plan=plan)
