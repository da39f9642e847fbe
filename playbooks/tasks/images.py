"""`kubefab images.push`: the bundle's images into the inventory's private registry."""

from __future__ import annotations

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import registry, ui
from kubefab.playbooks.bundle import read_manifest
from kubefab.playbooks.inputs import stack_of
from kubefab.playbooks.tasks.common import load_cluster

images = Collection("images")


@task(name="push", auto_shortflags=False, help={"inventory": "cluster YAML file (default: $KUBEFAB_INVENTORY)"})
def push(ctx: Context, inventory: str | None = None) -> None:
    """Copy the bundle's images (pause, CoreDNS, the CNI's) to registry.url, where nodes pull them from."""
    cluster = load_cluster(inventory)
    manifest = read_manifest(cluster.bundle_dir)
    try:
        done = registry.push(cluster, stack_of(cluster), manifest.arch if manifest else "amd64", log=ui.out.print)
    except registry.PushError as exc:
        raise Exit(f"images.push: {exc}", code=1) from None
    ui.table(
        f"images in {cluster.registry.url}",
        ["image", "pushed as", "digest"],
        [(p.ref, p.target, p.digest) for p in done],
    )


images.add_task(push)
