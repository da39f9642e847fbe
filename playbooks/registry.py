"""A private registry filled from the bundle (`kubefab images.push`): each image copied with skopeo to the
path containerd asks the registry for when it mirrors the image's upstream (registry.k8s.io/pause:3.10.2 ->
<registry>/pause:3.10.2), verified against the registry's CA, and checked to arrive with the bundle's digest."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubefab.playbooks import oci
from kubefab.playbooks.bundle import image_path, read_manifest, required_images
from kubefab.playbooks.model import Cluster
from kubefab.playbooks.versions import Stack


class PushError(Exception):
    pass


@dataclass(frozen=True)
class Pushed:
    ref: str
    target: str
    digest: str


def mirror_ref(registry_host: str, ref: str) -> str:
    """Where the image `ref` lives in the private registry: its repository path under the registry's name."""
    _, name, tag = oci.split_ref(ref)
    return f"{registry_host}/{name}:{tag}"


def ca_file(c: Cluster) -> Path:
    return c.path(c.registry.ca) if c.registry.ca else c.dir / "pki" / "ca.crt"


def push(c: Cluster, stack: Stack, arch: str, log: Callable[[str], None] = print) -> list[Pushed]:
    if not c.registry.url:
        raise PushError(f"{c.source}: registry.url is not set; there is no registry to push to")
    if shutil.which("skopeo") is None:
        raise PushError("pushing images needs skopeo (apt-get install skopeo / dnf install skopeo)")
    manifest = read_manifest(c.bundle_dir)
    refs = required_images(c, stack)
    missing = [r for r in refs if not (manifest and image_path(r, arch) in manifest.files)]
    if missing:
        raise PushError(f"{c.bundle_dir}: image(s) missing: {', '.join(missing)}; run `kubefab bundle` first")
    assert manifest is not None
    done = []
    with tempfile.TemporaryDirectory() as certs:
        shutil.copyfile(ca_file(c), Path(certs) / "ca.crt")  # skopeo trusts every *.crt of the directory
        for ref in refs:
            entry = manifest.files[image_path(ref, arch)]
            target = mirror_ref(c.registry.host, ref)
            digest_file = Path(certs) / "digest"
            log(f"pushing {ref} to {target}")
            proc = subprocess.run(
                [
                    "skopeo",
                    "copy",
                    "--quiet",
                    "--dest-cert-dir",
                    certs,
                    "--digestfile",
                    str(digest_file),
                    f"oci-archive:{c.bundle_dir / entry.path}",
                    f"docker://{target}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise PushError(f"skopeo copy to docker://{target}: {proc.stderr.strip()[-1500:]}")
            digest = digest_file.read_text().strip()
            if entry.digest and digest != entry.digest:
                raise PushError(f"{target}: the registry holds {digest}, not the bundle's {entry.digest}")
            done.append(Pushed(ref, target, digest))
    return done
