"""OCI images as archives (an OCI image layout in a tar): written from files kubefab built, read back for their
digest and blobs. Layers are reproducible (sorted entries, zero times, root-owned, gzip without a timestamp),
so the same inputs give the same image digest on every machine."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# containerd's import takes the image name from this annotation; other tools read the OCI one.
CONTAINERD_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"


class ImageError(Exception):
    pass


@dataclass(frozen=True)
class LayerFile:
    """One file (or, with `link`, a symbolic link) of a layer."""

    path: str
    data: bytes = b""
    mode: int = 0o755
    link: str | None = None


@dataclass(frozen=True)
class Image:
    ref: str  # e.g. registry.k8s.io/pause:3.10.2
    arch: str
    entries: tuple[LayerFile, ...]
    entrypoint: tuple[str, ...]
    user: str = ""
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    labels: dict[str, str] = field(default_factory=dict)


def split_ref(ref: str) -> tuple[str, str, str]:
    """`registry.k8s.io/coredns/coredns:v1.14.6` -> (registry.k8s.io, coredns/coredns, v1.14.6). A name with
    no registry part is Docker Hub's, whose one-word names live under library/."""
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        raise ImageError(f"{ref}: expected <registry>/<repository>:<tag>")
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        first, rest = "docker.io", name
    if first == "docker.io" and "/" not in rest:
        rest = f"library/{rest}"
    return first, rest, tag


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(entries: tuple[LayerFile, ...]) -> bytes:
    """An uncompressed layer: parent directories first, every entry root-owned with time 0."""
    dirs = sorted(
        {
            "/".join(e.path.strip("/").split("/")[:i])
            for e in entries
            for i in range(1, len(e.path.strip("/").split("/")))
        }
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for e in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(e.path.strip("/"))
            info.mode = e.mode
            if e.link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, e.link
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def blobs(image: Image) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The manifest and every blob it names (config, layer) as (digest, bytes)."""
    tar = layer_tar(image.entries)
    layer = gzip.compress(tar, compresslevel=9, mtime=0)
    config = json.dumps(
        {
            "architecture": image.arch,
            "os": "linux",
            "config": {
                "Entrypoint": list(image.entrypoint),
                "Env": list(image.env),
                "User": image.user,
                "WorkingDir": "/",
                "Labels": image.labels,
            },
            "rootfs": {"type": "layers", "diff_ids": [digest(tar)]},
            "history": [{"created_by": "kubefab", "comment": "built from source by kubefab"}],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": digest(config), "size": len(config)},
            "layers": [{"mediaType": LAYER, "digest": digest(layer), "size": len(layer)}],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return manifest, [(digest(config), config), (digest(layer), layer)]


def write_archive(image: Image, path: Path) -> str:
    """The image as an OCI layout tar at `path`; returns the manifest digest (what a registry and containerd
    call the image's digest)."""
    manifest, parts = blobs(image)
    return write_layout_tar(image.ref, image.arch, manifest, dict(parts), path)


def write_layout_tar(ref: str, arch: str, manifest: bytes, parts: dict[str, bytes], path: Path) -> str:
    """One image (its manifest and the blobs it names) as an OCI layout tar named `ref`, written under a
    temporary name and renamed into place."""
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {
                    "mediaType": json.loads(manifest).get("mediaType", MANIFEST),
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {CONTAINERD_NAME: ref, REF_NAME: split_ref(ref)[2]},
                }
            ],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    members = [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", index),
        *(
            (f"blobs/sha256/{d.removeprefix('sha256:')}", b)
            for d, b in sorted({digest(manifest): manifest, **parts}.items())
        ),
    ]
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return digest(manifest)


def layout_to_archive(layout: Path, ref: str, arch: str, target: Path) -> str:
    """The single-image OCI layout directory `layout` (what skopeo writes) as an archive named `ref`."""
    entry = json.loads((layout / "index.json").read_text())["manifests"][0]

    def blob(d: str) -> bytes:
        return (layout / "blobs" / "sha256" / d.removeprefix("sha256:")).read_bytes()

    manifest = blob(entry["digest"])
    doc = json.loads(manifest)
    parts = {d["digest"]: blob(d["digest"]) for d in [doc["config"], *doc["layers"]]}
    return write_layout_tar(ref, arch, manifest, parts, target)


@dataclass(frozen=True)
class Archive:
    """An OCI layout tar read back: the one image it holds."""

    ref: str
    digest: str
    manifest: bytes
    blobs: dict[str, bytes]

    @property
    def media_type(self) -> str:
        return json.loads(self.manifest).get("mediaType", MANIFEST)


def read_archive(path: Path) -> Archive:
    try:
        with tarfile.open(path) as tar:
            files = {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        (entry,) = json.loads(files["index.json"])["manifests"]
        annotations = entry.get("annotations", {})
        ref = annotations.get(CONTAINERD_NAME) or annotations[REF_NAME]
        found = {
            f"sha256:{n.removeprefix('blobs/sha256/')}": b for n, b in files.items() if n.startswith("blobs/sha256/")
        }
        manifest = found[entry["digest"]]
    except (OSError, tarfile.TarError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ImageError(f"{path}: not an OCI image archive with one image ({exc})") from None
    for d, data in found.items():
        if digest(data) != d:
            raise ImageError(f"{path}: blob {d} does not match its digest")
    return Archive(ref, entry["digest"], manifest, found)
