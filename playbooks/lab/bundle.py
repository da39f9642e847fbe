"""The lab bundle: release files rebuilt from Debian's packages (etcd, containerd, runc, CNI plugins)
plus Kubernetes stand-ins, laid out exactly as a bundle of real upstream release files, with a manifest.

Rebuilt only when an input changes: a package's candidate version, the Kubernetes version, the
stand-ins' sources or the flag references they are built with.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from playbooks import flagref, versions
from playbooks.lab.archive import tar_gz
from playbooks.lab.commands import run
from playbooks.lab.mounts import remove_tree
from playbooks.lab.settings import REPO_ROOT

STANDINS_DIR = REPO_ROOT / "tests" / "lab" / "standins"
STANDINS_SOURCE = "tests/lab/standins"
INPUTS_FILE = ".inputs.sha256"
MANIFEST = "manifest.yaml"
# Bump when the packing below changes, so cached bundles are rebuilt.
RECIPE = 3

BuildStandin = Callable[[str, str, list[str]], bytes]


@dataclass(frozen=True)
class DebianSource:
    component: str  # as in the versions table: etcd, containerd, runc, cni_plugins
    packages: tuple[str, ...]  # the first one's version is the component's


DEBIAN_SOURCES = (
    DebianSource("etcd", ("etcd-server", "etcd-client")),
    DebianSource("containerd", ("containerd",)),
    DebianSource("runc", ("runc",)),
    DebianSource("cni_plugins", ("containernetworking-plugins",)),
)


@dataclass(frozen=True)
class Package:
    name: str
    version: str  # Debian's, e.g. 1.6.20~ds1-1+deb12u3
    arch: str

    @property
    def filename(self) -> str:
        """The name `apt-get download` saves it under (an epoch's ':' is written %3a)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def upstream_version(debian_version: str) -> str:
    """'3.4.23-4+b4' -> '3.4.23', '1.6.20~ds1-1+deb12u3' -> '1.6.20', '1:2.2.7-1' -> '2.2.7'."""
    match = re.match(r"(?:\d+:)?(\d+(?:\.\d+)*)", debian_version)
    if match is None:
        raise ValueError(f"no upstream version in Debian version {debian_version!r}")
    return match.group(1)


def parse_apt_show(text: str) -> dict[str, Package]:
    """`apt-cache show --no-all-versions` stanzas -> package name -> candidate."""
    found = {}
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.M))
        if "Package" in fields:
            found[fields["Package"]] = Package(fields["Package"], fields["Version"], fields["Architecture"])
    return found


def candidates(names: list[str], pkgcache: Path) -> dict[str, Package]:
    # apt's own binary cache may be switched off (container images do): keep one of ours, saving a
    # rebuild of it (seconds) on every `lab.up`.
    pkgcache.parent.mkdir(parents=True, exist_ok=True)
    found = parse_apt_show(run(["apt-cache", "-o", f"Dir::Cache::pkgcache={pkgcache}", "show", "--no-all-versions",
                                *names], check=False))
    missing = [n for n in names if n not in found]
    if missing:
        raise RuntimeError(f"apt knows no {', '.join(missing)}: run `apt-get update` first")
    return found


def pack(component: str, version: str, arch: str, tree: Path) -> bytes:
    """One release file in upstream's shape, from a tree the Debian packages were unpacked into."""
    def files(directory: str, prefix: str) -> dict[str, bytes | None]:
        return {prefix + p.name: p.read_bytes() for p in sorted((tree / directory).iterdir()) if p.is_file()}

    match component:
        case "etcd":
            top = f"etcd-v{version}-linux-{arch}/"
            return tar_gz({top: None, **{top + b: (tree / "usr/bin" / b).read_bytes() for b in ("etcd", "etcdctl")}})
        case "containerd":
            return tar_gz({"bin/": None, **files("usr/bin", "bin/")})
        case "runc":
            return (tree / "usr/sbin/runc").read_bytes()
        case "cni_plugins":
            return tar_gz({"./": None, **files("usr/lib/cni", "./")})
    raise ValueError(f"no Debian packing for {component}")


def standin_flags(name: str, kubernetes_version: str) -> list[str]:
    """The real binary's flags for this minor (kubectl's are not tracked: client-side only)."""
    if name not in flagref.COMPONENTS:
        return []
    return sorted(flagref.valid_flags(name, versions.minor_of(kubernetes_version)))


def load_builder(standins: Path) -> BuildStandin:
    """`build_standin` from <standins>/build.py, imported by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("kubefab_lab_standins_build", standins / "build.py")
    if spec is None or spec.loader is None or not (standins / "build.py").is_file():
        raise FileNotFoundError(f"no stand-in builder at {standins / 'build.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_standin


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def inputs_key(packages: dict[str, Package], kubernetes_version: str, standins_digest: str,
               flags: dict[str, list[str]]) -> str:
    text = json.dumps({"packages": {n: [p.version, p.arch] for n, p in sorted(packages.items())},
                       "kubernetes": kubernetes_version, "standins": standins_digest, "flags": flags,
                       "recipe": RECIPE}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def versions_of(manifest: dict[str, Any]) -> dict[str, str]:
    """The component versions the bundle holds, for the inventory's `versions:` overrides."""
    components = {s.component for s in DEBIAN_SOURCES}
    return {f["component"]: str(f["version"]) for f in manifest["files"] if f["component"] in components}


def ensure_bundle(dest: Path, debs: Path, kubernetes_version: str, standins: Path = STANDINS_DIR,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """The bundle at `dest`, rebuilt only if an input changed; returns its manifest."""
    names = [p for s in DEBIAN_SOURCES for p in s.packages]
    packages = candidates(names, debs / "pkgcache.bin")
    flags = {n: standin_flags(n, kubernetes_version) for n in versions.KUBE_BINARIES}
    key = inputs_key(packages, kubernetes_version, tree_digest(standins), flags)
    manifest_path, inputs = dest / MANIFEST, dest / INPUTS_FILE
    if inputs.is_file() and inputs.read_text().strip() == key and manifest_path.is_file():
        return yaml.safe_load(manifest_path.read_text())

    log(f"building the lab bundle in {dest} ...")
    builder = load_builder(standins)
    download(list(packages.values()), debs)
    staging = dest.with_name(dest.name + ".new")
    remove_tree(staging)
    staging.mkdir(parents=True)
    arch = packages[names[0]].arch
    entries = [*debian_files(staging, debs, packages, arch),
               *standin_files(staging, builder, kubernetes_version, arch, flags)]
    manifest = {"kind": "lab", "arch": arch, "files": entries}
    (staging / MANIFEST).write_text(
        "# Built by `kubefab lab.up` from Debian packages and Kubernetes stand-ins: for the lab only.\n"
        + yaml.safe_dump(manifest, sort_keys=False, default_flow_style=None, width=1000))
    (staging / INPUTS_FILE).write_text(key + "\n")
    remove_tree(dest)
    staging.rename(dest)
    return manifest


def download(packages: list[Package], debs: Path) -> None:
    debs.mkdir(parents=True, exist_ok=True)
    wanted = [p for p in packages if not (debs / p.filename).is_file()]
    if wanted:
        # Sandbox user root: the _apt user cannot write into a root-owned lab directory.
        run(["apt-get", "download", "-o", "APT::Sandbox::User=root", *(f"{p.name}={p.version}" for p in wanted)],
            cwd=debs)


def debian_files(staging: Path, debs: Path, packages: dict[str, Package], arch: str) -> list[dict[str, Any]]:
    entries = []
    for source in DEBIAN_SOURCES:
        debian = [packages[n] for n in source.packages]
        version = upstream_version(debian[0].version)
        with tempfile.TemporaryDirectory(dir=staging) as tmp:
            for p in debian:
                run(["dpkg-deb", "-x", debs / p.filename, tmp])
            data = pack(source.component, version, arch, Path(tmp))
        origin = "Debian " + ", ".join(f"{p.name} {p.version}" for p in debian)
        entries.append(write_file(staging, source.component, version, arch, data, origin, standin=False))
    return entries


def standin_files(staging: Path, builder: BuildStandin, kubernetes_version: str, arch: str,
                  flags: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The stand-ins packed like Kubernetes' server tarball: kubernetes/server/bin/<name>."""
    top = "kubernetes/server/bin/"
    members: dict[str, bytes | None] = {"kubernetes/": None, "kubernetes/server/": None, top: None}
    members |= {top + name: builder(name, kubernetes_version, flags[name]) for name in versions.KUBE_BINARIES}
    # Debian has no cri-tools package: crictl is a stand-in as well.
    crictl = versions.stack(kubernetes_version).crictl
    return [write_file(staging, "kubernetes_server", kubernetes_version, arch, tar_gz(members), STANDINS_SOURCE,
                       standin=True),
            write_file(staging, "crictl", crictl, arch, tar_gz({"crictl": builder("crictl", crictl, [])}),
                       STANDINS_SOURCE, standin=True)]


def write_file(staging: Path, component: str, version: str, arch: str, data: bytes, source: str,
               standin: bool) -> dict[str, Any]:
    """Put one release file where the real bundle has it; return its manifest entry."""
    rel = versions.release(component, version, arch).bundle_path
    path = staging / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644 if rel.endswith((".tar.gz", ".tgz")) else 0o755)
    return {"component": component, "version": version, "path": rel,
            "sha256": hashlib.sha256(data).hexdigest(), "source": source, "standin": standin}
