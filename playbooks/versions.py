"""The versions table: per supported Kubernetes minor, the matching component versions, and per
component version the release file URL and its published SHA-256 per architecture."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kubefab.playbooks import paths

VERSIONS_FILE = Path(__file__).parent / "data" / "versions.yaml"
# What the Kubernetes server tarball holds under kubernetes/server/bin/.
KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl")


@cache
def table() -> dict[str, Any]:
    return yaml.safe_load(VERSIONS_FILE.read_text())


def supported_minors() -> list[str]:
    return sorted(table()["minors"], key=lambda m: tuple(int(x) for x in m.split(".")))


def default_minor() -> str:
    return str(table()["default"])


def end_of_life(minor: str) -> str | None:
    """The date a minor kubefab no longer supports reached its end of life upstream, if the table has it."""
    return (table().get("end_of_life") or {}).get(minor)


def minor_of(version: str) -> str:
    """'1.35' or '1.35.2' or 'v1.35.2' -> '1.35'; raises ValueError on anything else."""
    parts = version.removeprefix("v").split(".")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise ValueError(version)
    return ".".join(parts[:2])


@dataclass(frozen=True)
class Stack:
    """Every version a cluster runs: Kubernetes' patch release and the components matched to it."""

    kubernetes: str
    minor: str
    etcd: str
    containerd: str
    runc: str
    cni_plugins: str
    crictl: str
    pause: str
    coredns: str
    calico: str
    flannel: str

    @property
    def pause_image(self) -> str:
        return f"registry.k8s.io/pause:{self.pause}"

    @property
    def coredns_image(self) -> str:
        return f"registry.k8s.io/coredns/coredns:v{self.coredns}"

    def version_of(self, component: str) -> str:
        """The version of a versions-table component ("kubernetes_server" is Kubernetes')."""
        return self.kubernetes if component == "kubernetes_server" else getattr(self, component)


def stack(kubernetes_version: str, overrides: dict[str, str | None] | None = None) -> Stack:
    """The versions for an inventory's `kubernetes_version` ('1.35' takes the pinned patch release)."""
    minor = minor_of(kubernetes_version)
    pinned = {k: str(v) for k, v in table()["minors"][minor].items()}
    if kubernetes_version.removeprefix("v").count(".") == 2:
        pinned["kubernetes"] = kubernetes_version.removeprefix("v")
    pinned |= {k: v for k, v in (overrides or {}).items() if v is not None}
    return Stack(minor=minor, **pinned)


@dataclass(frozen=True)
class Release:
    """One upstream release file: where `fab bundle` fetches it and the checksum it must have."""

    component: str
    version: str
    arch: str
    url: str
    digest: tuple[str, str] | None  # (algorithm, hex) published for this file; None when the table has none

    @property
    def checksum(self) -> str:
        return f"{self.digest[0]}:{self.digest[1]}" if self.digest else "unpinned"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def bundle_path(self) -> str:
        """Where the file lives inside a bundle directory."""
        return paths.join(self.component, self.version, self.arch, self.filename)


def release(component: str, version: str, arch: str) -> Release:
    releases = table()["releases"]
    entry = releases.get(component, {}).get(version)
    if entry is None:
        # Not pinned: keep the URL pattern of any pinned version so the bundle layout stays the same.
        entry = {"url": next(iter(releases[component].values()))["url"], "sha256": {}}
    url = entry["url"].format(version=version, arch=arch)
    digest = next(
        ((algo, entry[algo][arch]) for algo in ("sha512", "sha256") if (entry.get(algo) or {}).get(arch)), None
    )
    return Release(component, version, arch, url, digest)


NOARCH = "all"  # the bundle's architecture directory of files that are the same for every architecture


class CNIError(Exception):
    pass


def cni_release(cni: str, stack: Stack) -> Release:
    """The CNI's manifest as a release file."""
    version = stack.calico if cni == "calico" else stack.flannel
    if version in (None, "None"):
        raise CNIError(f"no {cni} version is pinned for Kubernetes {stack.minor}: set versions.{cni}")
    return release(f"{cni}_manifest", version, NOARCH)
