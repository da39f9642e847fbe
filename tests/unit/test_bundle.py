"""The bundle: verification against recorded and published checksums, mirrors, binaries from archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from kubefab.playbooks import bundle, components
from kubefab.playbooks.inventory import load
from kubefab.playbooks.plan import Binary
from kubefab.playbooks.versions import stack
from tests.conftest import EXAMPLE


def recorded_bundle(tmp_path: Path, origin: str) -> tuple:
    """A bundle whose manifest records each file's SHA-256, as `bundle --from-source` (origin "source") or
    `bundle` (origin "download") write it; the files are decoys, not the published ones."""
    data = yaml.safe_load(EXAMPLE.read_text()) | {"bundle": str(tmp_path / "bundle")}
    (tmp_path / "i.yaml").write_text(yaml.safe_dump(data))
    c = load(tmp_path / "i.yaml")
    s = stack(c.kubernetes_version)
    files = {}
    for r in components.releases(c, s, "amd64"):
        path = tmp_path / "bundle" / r.bundle_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(r.component.encode())
        files[r.bundle_path] = bundle.Entry(
            r.component, r.version, r.bundle_path, hashlib.sha256(r.component.encode()).hexdigest(), "test", origin
        )
    bundle.write_manifest(tmp_path / "bundle", bundle.Manifest("amd64", files))
    return c, s


def test_bundle_missing_files_are_one_error_with_the_fetch_command(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text()) | {"bundle": str(tmp_path / "empty")}
    (tmp_path / "i.yaml").write_text(yaml.safe_dump(data))
    c = load(tmp_path / "i.yaml")
    s = stack(c.kubernetes_version)
    (problem,) = bundle.verify(c, components.releases(c, s, "amd64"), s, "amd64")
    assert "6 release file(s) missing" in problem
    assert "kubernetes-server-linux-amd64.tar.gz" in problem and "crictl" in problem
    assert f"kubefab bundle --inventory {c.source}" in problem
    assert f"kubefab bundle --from-source --inventory {c.source}" in problem


def test_built_files_are_checked_against_the_sha256_recorded_when_built(tmp_path: Path) -> None:
    c, s = recorded_bundle(tmp_path, bundle.BUILT)
    assert bundle.verify(c, components.releases(c, s, "amd64"), s, "amd64") == []
    tampered = tmp_path / "bundle" / components.releases(c, s, "amd64")[0].bundle_path
    tampered.write_bytes(b"changed")
    (problem,) = bundle.verify(c, components.releases(c, s, "amd64"), s, "amd64")
    assert "differs from the SHA-256 recorded when it was built" in problem and str(tampered) in problem


def test_downloaded_files_are_checked_against_published_checksums(tmp_path: Path) -> None:
    c, s = recorded_bundle(tmp_path, bundle.DOWNLOADED)
    problems = bundle.verify(c, components.releases(c, s, "amd64"), s, "amd64")
    assert problems and all("differs from the published" in p for p in problems)
    assert any("sha512" in p for p in problems)  # the server tarball's CHANGELOG checksum


def test_mirror_url() -> None:
    url = "https://dl.k8s.io/v1.35.4/kubernetes-server-linux-amd64.tar.gz"
    assert bundle.mirrored(url, None) == url
    assert bundle.mirrored(url, "http://m/kube/") == f"http://m/kube/{url.removeprefix('https://')}"


def test_binaries_are_read_from_archives(tmp_path: Path) -> None:
    archive = tmp_path / "b" / "x" / "1" / "amd64" / "x.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("./bin/tool")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    b = Binary("x/1/amd64/x.tar.gz", "bin/tool", "/usr/local/bin/tool")
    assert bundle.extracted(tmp_path / "b", b).read_bytes() == b"hello"
    assert gzip.decompress(bundle.compressed(tmp_path / "b", b).read_bytes()) == b"hello"
    with pytest.raises(FileNotFoundError, match="has no member bin/other"):
        bundle.extracted(tmp_path / "b", Binary("x/1/amd64/x.tar.gz", "bin/other", "/x"))


def test_a_cached_binary_is_never_seen_half_written(tmp_path: Path) -> None:
    """Every host's thread asks for the same binary when a phase starts on a fresh bundle: none may read a file
    another is still writing (seen as `gzip: invalid compressed data--crc error` on the hosts). The cached
    files appear only complete, and threads asking at once all get the same complete copy."""
    data = os.urandom(16 << 20)
    archive = tmp_path / "b" / "x" / "1" / "amd64" / "x.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("bin/tool")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    b = Binary("x/1/amd64/x.tar.gz", "bin/tool", "/usr/local/bin/tool")
    plain = tmp_path / "b" / bundle.CACHE / b.source / "bin/tool"
    seen = []
    with ThreadPoolExecutor(4) as pool:
        copies = [pool.submit(lambda: bundle.compressed(tmp_path / "b", b).read_bytes()) for _ in range(4)]
        while not all(c.done() for c in copies):
            if plain.exists():
                seen.append(plain.stat().st_size)
            time.sleep(0.001)
    assert seen and set(seen) == {len(data)}, f"extracted file seen at sizes {sorted(set(seen))[:5]}"
    assert all(gzip.decompress(c.result()) == data for c in copies)
    assert not list((tmp_path / "b").rglob("*.part"))
