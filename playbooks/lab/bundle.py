"""The lab's bundle: the real release files of the default minor's pinned versions. An official file that
`kubefab bundle` downloaded into it and that matches the versions table is used as it is; every other one is
built from source (playbooks/source.py), which is how a machine without internet gets them."""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path

from kubefab.playbooks import components, images, source, versions
from kubefab.playbooks.bundle import Manifest, file_digest, manifest_images, read_manifest
from kubefab.playbooks.facts import ARCH
from kubefab.playbooks.versions import Release, Stack, cni_release


def machine_arch() -> str:
    machine = platform.machine()
    if machine not in ARCH:
        raise RuntimeError(f"the lab runs on amd64 or arm64 machines, not {machine}")
    return ARCH[machine]


def lab_stack() -> Stack:
    return versions.stack(versions.default_minor())


# What the lab's upgrade test starts from: the minor before the default one, its Kubernetes release with the
# default minor's other components (so the one build it adds to the lab bundle is Kubernetes').
UPGRADE_OVERRIDES = ("etcd", "containerd", "runc", "cni_plugins", "crictl", "coredns")


def upgrade_from_minor() -> str:
    major, minor = versions.default_minor().split(".")
    return f"{major}.{int(minor) - 1}"


def upgrade_from_stack() -> Stack:
    return versions.stack(upgrade_from_minor(), upgrade_from_overrides())


def upgrade_from_overrides() -> dict[str, str | None]:
    """The inventory's `versions:` for the upgrade test's starting cluster."""
    target = lab_stack()
    return {name: getattr(target, name) for name in UPGRADE_OVERRIDES}


def official(bundle: Path, manifest: Manifest | None, r: Release) -> bool:
    """The bundle holds the upstream file itself, with its published checksum."""
    entry = manifest.files.get(r.bundle_path) if manifest else None
    path = bundle / r.bundle_path
    return (
        r.digest is not None
        and not (entry and entry.built)
        and path.is_file()
        and file_digest(path, r.digest[0]) == r.digest[1]
    )


def lab_images(stack: Stack, bundle: Path) -> list[str]:
    """The images a lab deploy runs (the lab inventory's add-ons: CoreDNS and flannel, whose manifest in the
    bundle names its images)."""
    flannel = (bundle / cni_release("flannel", stack).bundle_path).read_text()
    return list(dict.fromkeys([stack.pause_image, stack.coredns_image, *manifest_images(flannel)]))


def ensure_bundle(
    dest: Path, cache: Path, stack: Stack | None = None, arch: str | None = None, log: Callable[[str], None] = print
) -> list[Release]:
    """Every release file and image a lab deploy reads, in `dest`; returns the release files."""
    stack, arch = stack or lab_stack(), arch or machine_arch()
    releases = [*components.releases(None, stack, arch), cni_release("flannel", stack)]
    manifest = read_manifest(dest)
    wanted = [r for r in releases if not official(dest, manifest, r)]
    if wanted:
        source.fill_bundle(dest, wanted, cache, log=log)
    # Images from the default minor's source whatever `stack` is: the upgrade test's older stack names the same
    # images, which must stay one build (a pause image of the same tag built twice would differ).
    images.fill_images(dest, lab_images(stack, dest), arch, cache, lab_stack().kubernetes, log=log)
    return releases
