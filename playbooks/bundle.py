"""The bundle directory: every release file a deploy installs, laid out as `<component>/<version>/<arch>/<file>`
with a `manifest.yaml`. Deploy reads only from here. `kubefab bundle` fills it with the official release files,
verified against the versions table's checksums; `kubefab bundle --from-source` with the same versions built
here (playbooks/source.py), which the manifest records with their SHA-256 and how they were made."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from kubefab.playbooks import fetch, oci
from kubefab.playbooks.model import Cluster
from kubefab.playbooks.plan import Binary
from kubefab.playbooks.versions import Release, Stack, cni_release

MANIFEST = "manifest.yaml"
CACHE = ".extracted"
# Release files nobody publishes a checksum for: `kubefab bundle` records the SHA-256 it downloaded in the
# manifest, and deploy checks the file against that record.
RECORDED = ("calico_manifest", "flannel_manifest")


DOWNLOADED, BUILT = "download", "source"


@dataclass(frozen=True)
class Entry:
    component: str
    version: str
    path: str
    sha256: str
    source: str = ""  # the URL it came from, or how it was built
    origin: str = DOWNLOADED  # download | source
    digest: str = ""  # images: the manifest digest (what containerd and registries call the image's digest)

    @property
    def built(self) -> bool:
        return self.origin == BUILT


@dataclass(frozen=True)
class Manifest:
    arch: str
    files: dict[str, Entry]


class ManifestError(ValueError):
    pass


def read_manifest(bundle: Path) -> Manifest | None:
    """The bundle's manifest, None when it has none; ManifestError naming the file when it is not one."""
    path = bundle / MANIFEST
    if not path.is_file():
        return None
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: unreadable ({str(exc).splitlines()[0]})") from None
    files = doc.get("files", []) if isinstance(doc, dict) else None
    required = {"component", "version", "path", "sha256"}
    if not isinstance(files, list) or not all(isinstance(e, dict) and required <= set(e) for e in files):
        raise ManifestError(
            f"{path}: not a bundle manifest (a mapping with arch and files, each file with "
            f"{', '.join(sorted(required))}); move it away and run `kubefab bundle`"
        )
    fields = set(Entry.__dataclass_fields__)
    entries = [Entry(**{k: str(v) for k, v in e.items() if k in fields}) for e in files]
    for e in entries:
        if e.path.startswith("/") or ".." in e.path.split("/"):
            raise ManifestError(f"{path}: {e.path!r} is not a path inside the bundle")
    return Manifest(str(doc.get("arch", "amd64")), {e.path: e for e in entries})


def write_manifest(bundle: Path, manifest: Manifest) -> None:
    doc = {"arch": manifest.arch, "files": [vars(e) for e in sorted(manifest.files.values(), key=lambda e: e.path)]}
    (bundle / MANIFEST).write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))


IMAGE = "image"  # the component of an image's manifest entry; its version is the image reference


def image_path(ref: str, arch: str) -> str:
    """Where the OCI archive of image `ref` lives in a bundle."""
    registry, name, tag = oci.split_ref(ref)
    return f"images/{registry}/{name}/{tag}/{arch}/image.oci.tar"


def manifest_images(text: str) -> list[str]:
    """The image references a Kubernetes manifest runs, in order, each once."""
    found = re.findall(r"""^\s*(?:-\s+)?image:\s*["']?([^\s"'#]+)""", text, re.M)
    return list(dict.fromkeys(found))


def sandbox_image(c: Cluster, stack: Stack) -> str:
    """The pause image every pod sandbox runs (containerd's sandbox image, the book's
    --pod-infra-container-image): the inventory's, else the pinned one, from the cluster's registry if it has
    one."""
    if c.registry.pause_image:
        return c.registry.pause_image
    if c.registry.url:
        return f"{c.registry.host}/{oci.split_ref(stack.pause_image)[1]}:{stack.pause}"
    return stack.pause_image


def required_images(c: Cluster, stack: Stack, bundle: Path | None = None) -> list[str]:
    """The images a deploy of `c` runs: pause on every node, CoreDNS, and those the CNI manifest names (read
    from the bundle's copy, once it is there)."""
    refs = [c.registry.pause_image or stack.pause_image] if c.workers else []
    if "coredns" in c.addons:
        refs.append(stack.coredns_image)
    if "cni" in c.addons:
        manifest = (bundle or c.bundle_dir) / cni_release(c.cni, stack).bundle_path
        if manifest.is_file():
            refs += manifest_images(manifest.read_text())
    return list(dict.fromkeys(refs))


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def verify(c: Cluster, releases: list[Release], stack: Stack, arch: str, addons: bool = False) -> list[str]:
    """Problems with the bundle for this deploy of `releases` (playbooks.components.releases): missing files
    (all listed, with the command that fetches them) and checksum mismatches. Release bundles are checked
    against the versions table, lab bundles against their own manifest."""
    bundle = c.bundle_dir
    manifest = read_manifest(bundle)
    wanted = list(releases)
    if addons and "cni" in c.addons:
        wanted.append(cni_release(c.cni, stack))
    missing = [r for r in wanted if not (bundle / r.bundle_path).exists()]
    problems: list[str] = []
    if missing:
        problems.append(
            f"{bundle}: {len(missing)} release file(s) missing:\n"
            + "".join(f"    {r.bundle_path}  ({r.url})\n" for r in missing)
            + f"  fetch them with: kubefab bundle --inventory {c.source}\n"
            + f"  or build them here: kubefab bundle --from-source --inventory {c.source}"
        )
    for r in wanted:
        path = bundle / r.bundle_path
        if r in missing:
            continue
        entry = manifest.files.get(r.bundle_path) if manifest else None
        if entry is not None and entry.built:
            if file_digest(path, "sha256") != entry.sha256:
                problems.append(
                    f"{path}: differs from the SHA-256 recorded when it was built ({entry.sha256}); "
                    f"delete it and run `kubefab bundle --from-source --inventory {c.source}`"
                )
        elif r.digest is None and r.component in RECORDED:
            if entry is None or file_digest(path, "sha256") != entry.sha256:
                problems.append(
                    f"{path}: differs from the SHA-256 `kubefab bundle` recorded when it fetched it; "
                    f"delete it and run `kubefab bundle --inventory {c.source}`"
                )
        elif r.digest is None:
            problems.append(
                f"{path}: the versions table pins no checksum for {r.component} {r.version}; "
                "use a pinned version or add its published checksum"
            )
        elif file_digest(path, r.digest[0]) != r.digest[1]:
            problems.append(
                f"{path}: {r.digest[0]} differs from the published {r.checksum}; delete it and "
                f"run `kubefab bundle --inventory {c.source}`"
            )
    if addons:
        problems += verify_images(c, stack, arch, manifest)
    return problems


def verify_images(c: Cluster, stack: Stack, arch: str, manifest: Manifest | None) -> list[str]:
    """The images this deploy imports are in the bundle as recorded (their SHA-256 when saved or built). With
    a private registry nothing is imported: nodes pull from it."""
    bundle, problems, missing = c.bundle_dir, [], []
    if c.registry.url:
        return []
    for ref in required_images(c, stack):
        rel = image_path(ref, arch)
        entry = manifest.files.get(rel) if manifest else None
        if entry is None or not (bundle / rel).is_file():
            missing.append(ref)
        elif file_digest(bundle / rel, "sha256") != entry.sha256:
            problems.append(
                f"{bundle / rel}: differs from the SHA-256 recorded when it was saved or built; delete "
                f"it and run `kubefab bundle` again"
            )
    if missing:
        problems.append(
            f"{bundle}: {len(missing)} image(s) missing: {', '.join(missing)}\n"
            f"  save them with: kubefab bundle --inventory {c.source}\n"
            f"  or build them here: kubefab bundle --from-source --inventory {c.source}"
        )
    return problems


def extracted(bundle: Path, binary: Binary) -> Path:
    """The file for `binary` on the operator's disk: the bundle file itself, or its archive member unpacked
    once into `<bundle>/.extracted/` (reused by every host and every later run)."""
    source = bundle / binary.source
    name = binary.member
    if name is None:
        return source
    target = bundle / CACHE / binary.source / name
    key = f"{source.stat().st_size}:{source.stat().st_mtime_ns}"

    def unpack(partial: Path) -> None:
        with tarfile.open(source) as archive:
            member = _member(archive, name, source)
            with archive.extractfile(member) as src, open(partial, "wb") as dst:  # type: ignore[union-attr]
                shutil.copyfileobj(src, dst, 1 << 20)

    return _cached(target, key, unpack)


def compressed(bundle: Path, binary: Binary) -> Path:
    """The binary gzipped, made once and cached beside the extracted files: every host is sent about a third
    of the bytes, which dominates the node phase on many hosts (gzip -d is on every distribution)."""
    plain = extracted(bundle, binary)
    target = bundle / CACHE / "gzip" / (binary.source + (f"/{binary.member}" if binary.member else "") + ".gz")
    key = f"{plain.stat().st_size}:{plain.stat().st_mtime_ns}"

    def pack(partial: Path) -> None:
        with open(plain, "rb") as src, gzip.open(partial, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    return _cached(target, key, pack)


_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _cached(target: Path, key: str, make: Callable[[Path], None]) -> Path:
    """`target`, made by `make` unless a copy made from the same input (`key`) is there. Every host's thread asks
    for the same files at once: one makes it (into a temporary name, renamed when complete), the others wait."""
    stamp = target.with_name(target.name + ".from")
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(target, threading.Lock())
    with lock:
        if target.exists() and stamp.exists() and stamp.read_text() == key:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")
        make(partial)
        partial.rename(target)
        stamp.write_text(key)
    return target


def _member(archive: tarfile.TarFile, name: str, source: Path) -> tarfile.TarInfo:
    for info in archive:
        if info.isfile() and info.name.removeprefix("./") == name:
            return info
    raise FileNotFoundError(f"{source}: has no member {name}")


def mirrored(url: str, mirror: str | None) -> str:
    """`https://dl.k8s.io/v1.35.4/x` through mirror `http://m/k8s` -> `http://m/k8s/dl.k8s.io/v1.35.4/x`:
    an internal mirror laid out by host name serves every upstream from one base URL."""
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + url.split("://", 1)[1]


def download(
    c: Cluster, releases: list[Release], stack: Stack, arch: str, log=print, mirror: str | None = None
) -> list[str]:
    """`kubefab bundle`: fetch every missing file of `releases` and the CNI manifest (from `mirror` when given),
    several at once, verify each against the versions table, and record it in the manifest. Returns the problems:
    files that could not be fetched as one summary, then each file that failed verification (not kept)."""
    bundle = c.bundle_dir
    bundle.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(bundle) or Manifest(arch, {})
    if manifest.arch != arch:
        return [f"{bundle}: holds a bundle for {manifest.arch}; use another bundle directory"]
    problems = []
    files = dict(manifest.files)
    wanted: list[Release] = []
    for r in [*releases, cni_release(c.cni, stack)]:
        if r.digest is None and r.component not in RECORDED:
            problems.append(
                f"{r.url}: the versions table pins no checksum for {r.component} {r.version}; "
                "not fetched (use a pinned version, or build it: kubefab bundle --from-source)"
            )
        elif not (r.bundle_path in files and files[r.bundle_path].built):  # built here: kept (delete to fetch)
            wanted.append(r)
    missing = [r for r in wanted if not (bundle / r.bundle_path).exists()]
    results = fetch.fetch_all([(mirrored(r.url, mirror), bundle / r.bundle_path) for r in missing], log)
    failed = [f for f in results if f.error]
    if failed:
        problems.append(_unfetched(failed, len(results), mirror))
    lost = {f.path for f in failed}
    for r in wanted:
        path = bundle / r.bundle_path
        if path in lost:
            continue
        if r.digest is not None and file_digest(path, r.digest[0]) != r.digest[1]:
            problems.append(f"{r.url}: {r.digest[0]} mismatch (expected {r.digest[1]}); file removed")
            path.unlink()
            continue
        if r.digest is None and r.bundle_path not in files:
            log(
                f"note: {r.url} has no published checksum; its SHA-256 is recorded in {MANIFEST} and checked "
                "on every deploy"
            )
        if r.digest is None and r.bundle_path in files and file_digest(path, "sha256") != files[r.bundle_path].sha256:
            problems.append(f"{path}: differs from the SHA-256 recorded when it was fetched; delete it to fetch again")
            continue
        files[r.bundle_path] = Entry(r.component, r.version, r.bundle_path, file_digest(path, "sha256"), r.url)
    if files != manifest.files:  # nothing fetched, nothing written: no empty manifest
        write_manifest(bundle, Manifest(arch, files))
    if results and len(failed) == len(results) and all(f.network for f in failed):
        return [*problems, "images: not tried, the network is unreachable from here (see above)"]
    for ref in required_images(c, stack):
        rel = image_path(ref, arch)
        if rel in files and (bundle / rel).is_file():
            continue  # saved or built earlier: an image reference names one image for good
        log(f"saving image {ref}")
        try:
            (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
            digest = save_image(ref, arch, bundle / rel)
        except ImageSaveError as exc:
            problems.append(str(exc))
            continue
        files[rel] = Entry(IMAGE, ref, rel, file_digest(bundle / rel, "sha256"), f"docker://{ref}", DOWNLOADED, digest)
        write_manifest(bundle, Manifest(arch, files))
    return problems


def _unfetched(failed: list[fetch.Fetched], tried: int, mirror: str | None) -> str:
    """One summary of the files that could not be fetched, and what to do when the way there is the cause."""
    head = (
        f"no file could be fetched ({tried} tried)"
        if len(failed) == tried
        else f"{len(failed)} of {tried} file(s) could not be fetched"
    )
    lines = [f"{head}:", *(f"  {f.url}: {f.error}" for f in failed)]
    if any(f.network for f in failed):
        where = f"the mirror {mirror}" if mirror else "the release sites"
        lines.append(
            f"{where} cannot be reached from here: set HTTPS_PROXY (and NO_PROXY) for a proxy, or use --mirror URL "
            "for a mirror laid out by host name (docs/operations.md); partial downloads are kept and resumed"
        )
    return "\n".join(lines)


class ImageSaveError(Exception):
    pass


def save_image(ref: str, arch: str, target: Path, cert_dir: Path | None = None) -> str:
    """Copy `ref` from its registry into an OCI archive at `target` with skopeo (the manifest for `arch`);
    returns that manifest's digest."""
    if shutil.which("skopeo") is None:
        raise ImageSaveError(f"{ref}: saving images needs skopeo (apt-get install skopeo / dnf install skopeo)")
    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp) / "layout"
        certs = ["--src-cert-dir", str(cert_dir)] if cert_dir else []
        proc = subprocess.run(
            [
                "skopeo",
                "--override-arch",
                arch,
                "--override-os",
                "linux",
                "copy",
                "--quiet",
                *certs,
                f"docker://{ref}",
                f"oci:{layout}:{oci.split_ref(ref)[2]}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ImageSaveError(f"skopeo copy docker://{ref}: {proc.stderr.strip()[-1500:]}")
        return oci.layout_to_archive(layout, ref, arch, target)
