"""The container images a deploy runs (the sandbox's pause, CoreDNS, the CNI's), carried in the bundle as OCI
archives. Online, `kubefab bundle` saves them from their registries with skopeo; here, `--from-source` builds
each from its source (pause from the C file in the Kubernetes module, the rest from their Go modules) and
assembles the image itself (playbooks/oci.py), under the reference the manifests name. Saving with skopeo is
`playbooks.bundle.save_image`."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kubefab.playbooks import oci
from kubefab.playbooks.bundle import BUILT, IMAGE, Entry, Manifest, image_path, read_manifest
from kubefab.playbooks.oci import LayerFile
from kubefab.playbooks.source import (
    BuildError,
    Built,
    Command,
    GoTool,
    Log,
    Recipe,
    compile_recipe,
    finish,
    has_package,
    module_info,
    place,
    provenance,
    stamped,
)

# Bump when a recipe's contents or build flags change, so cached images are rebuilt.
IMAGE_REVISION = 1
PAUSE_USER = "65535:65535"  # upstream's pause image runs as this user


@dataclass(frozen=True)
class ImageRecipe:
    repository: str  # registry/name, without the tag
    path: str  # where the built program goes in the image
    entrypoint: tuple[str, ...]
    go: Recipe | None = None  # None: pause, compiled from C
    user: str = ""
    # Programs from this machine's Debian packages the image needs beside its own (the manifests run `cp`;
    # flanneld runs `nft` and `iptables`), each with the shared libraries it loads.
    programs: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    # The module version to build when the one the tag names is not served (the reason is recorded).
    substitute: tuple[str, str] | None = None

    def module_version(self, tag: str) -> str:
        return self.substitute[0] if self.substitute else tag.removeprefix("v")


COREDNS = Recipe(
    "coredns",
    ("github.com/coredns/coredns",),
    (Command("github.com/coredns/coredns", "coredns"),),
    ("github.com/coredns/coredns/coremain.GitCommit={commit}",),
)
TENCENT_COMMON = "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
# cgo, linked statically, as upstream builds it for amd64 (its UDP backend is C there).
FLANNEL = Recipe(
    "flannel",
    ("github.com/flannel-io/flannel",),
    (Command("github.com/flannel-io/flannel", "flanneld", cgo=True, static=True),),
    ("github.com/flannel-io/flannel/pkg/version.Version=v{version}",),
    overrides=(
        (
            TENCENT_COMMON,
            "v1.3.211",
            "the v1.3.79 flannel asks for (its Tencent VPC backend's SDK) is not served by the module proxy",
        ),
    ),
)
FLANNEL_CNI = Recipe(
    "flannel-cni-plugin",
    ("github.com/containernetworking/plugins",),
    (Command("github.com/containernetworking/plugins/plugins/meta/flannel", "flannel"),),
    ("github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v{version}",),
)

RECIPES = {
    r.repository: r
    for r in (
        ImageRecipe("registry.k8s.io/pause", "/pause", ("/pause",), user=PAUSE_USER, packages=("gcc", "libc6-dev")),
        ImageRecipe("registry.k8s.io/coredns/coredns", "/coredns", ("/coredns",), COREDNS),
        ImageRecipe(
            "ghcr.io/flannel-io/flannel",
            "/opt/bin/flanneld",
            ("/opt/bin/flanneld",),
            FLANNEL,
            programs=("busybox", "nft", "iptables"),
            packages=("busybox-static", "nftables", "iptables", "gcc", "libc6-dev"),
        ),
        # flannel-io/cni-plugin's module is not served by the module proxy; its code continues the flannel plugin
        # of containernetworking/plugins, whose last release with it (v0.9.1) is: the same CNI contract (it reads
        # /run/flannel/subnet.env and delegates to bridge + host-local).
        ImageRecipe(
            "ghcr.io/flannel-io/flannel-cni-plugin",
            "/flannel",
            ("/flannel",),
            FLANNEL_CNI,
            programs=("busybox",),
            packages=("busybox-static",),
            substitute=(
                "0.9.1",
                "github.com/flannel-io/cni-plugin is not served by the module proxy; built "
                "from the flannel plugin of containernetworking/plugins v0.9.1 it continues",
            ),
        ),
    )
}


def _recipe(ref: str) -> ImageRecipe | None:
    registry, name, _ = oci.split_ref(ref)
    return RECIPES.get(f"{registry}/{name}")


def buildable(ref: str) -> bool:
    return _recipe(ref) is not None


def recipe_for(ref: str) -> ImageRecipe:
    found = _recipe(ref)
    if found is None:
        raise BuildError(
            f"{ref}: kubefab cannot build this image from source (it builds "
            f"{', '.join(sorted(RECIPES))}); download it with `kubefab bundle`"
        )
    return found


# -- programs taken from this machine ------------------------------------------------------------------------

BUSYBOX_APPLETS = ("cp", "sh")
# flanneld runs iptables (to clean up the mode it does not use, and in iptables mode): the nftables-based
# multi-call binary Debian installs, with its commands and the extensions it loads by name at run time.
IPTABLES = "/usr/sbin/xtables-nft-multi"
IPTABLES_COMMANDS = (
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
)


@functools.cache  # the machine's files do not change during a run; every image and its cache key read them
def program_entries(name: str) -> tuple[LayerFile, ...]:
    """A program of this machine and what it needs at run time: busybox (static) with the applets the
    manifests call; iptables as above; anything else with the shared libraries and loader `ldd` lists."""
    if name == "busybox":
        busybox = Path("/bin/busybox")
        return (
            LayerFile("/bin/busybox", busybox.read_bytes()),
            *(LayerFile(f"/bin/{a}", link="busybox") for a in BUSYBOX_APPLETS),
        )
    if name == "iptables":
        extensions = sorted(p for d in Path("/usr/lib").glob("*/xtables") for p in d.glob("*.so"))
        found = {e.path: e for f in (IPTABLES, *map(str, extensions)) for e in with_libraries(f)}
        links = {f"/usr/sbin/{c}": LayerFile(f"/usr/sbin/{c}", link="xtables-nft-multi") for c in IPTABLES_COMMANDS}
        return tuple((found | links).values())
    path = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise BuildError(f"{name}: not installed on this machine (needed inside an image)")
    return with_libraries(path)


def with_libraries(path: str) -> tuple[LayerFile, ...]:
    if not Path(path).is_file():
        raise BuildError(f"{path}: not installed on this machine (needed inside an image)")
    ldd = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
    # Each file keeps its mode on this machine: the loader must stay executable.
    return tuple(
        LayerFile(f, Path(f).read_bytes(), Path(f).stat().st_mode & 0o777) for f in (path, *shared_libraries(ldd))
    )


def shared_libraries(ldd_output: str) -> list[str]:
    """The absolute paths `ldd` resolved (the vDSO has none)."""
    found = []
    for line in ldd_output.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            found.append(m.group(1))
    return found


# -- the build -------------------------------------------------------------------------------------------------


def image_key(recipe: ImageRecipe, ref: str, arch: str, go_version: str, kube_version: str) -> str:
    programs = {
        p: hashlib.sha256(
            b"".join(f"{e.path}:{e.mode:o}:{e.link}".encode() + e.data for e in program_entries(p))
        ).hexdigest()
        for p in recipe.programs
    }
    text = json.dumps(
        {
            "recipe": repr(recipe),
            "ref": ref,
            "arch": arch,
            "go": go_version,
            "programs": programs,
            "kubernetes": kube_version if recipe.go is None else "",
            "revision": IMAGE_REVISION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def cache_target(cache: Path, ref: str, arch: str) -> Path:
    return cache / "source" / image_path(ref, arch)


def cached(ref: str, arch: str, cache: Path, key: str) -> Built | None:
    return stamped(cache_target(cache, ref, arch), key, IMAGE, ref)


def fill_images(
    bundle: Path, refs: list[str], arch: str, cache: Path, kube_version: str, go: GoTool | None = None, log: Log = print
) -> list[Built]:
    """Build (or take from the cache) every image in `refs` into the bundle, recording each with its digest.
    Every image must have a recipe and every Debian package they need must be installed before any is built."""
    go = go or GoTool()
    go_version = go.version()
    recipes = {ref: recipe_for(ref) for ref in refs}
    missing = sorted({p for r in recipes.values() for p in r.packages if not has_package(p)})
    if missing:
        raise BuildError(
            f"building images from source needs the Debian package(s) {', '.join(missing)}: "
            f"apt-get install {' '.join(missing)}"
        )
    manifest = read_manifest(bundle) or Manifest(arch, {})
    files, done = dict(manifest.files), []
    for ref, recipe in recipes.items():
        built = cached(ref, arch, cache, image_key(recipe, ref, arch, go_version, kube_version)) or build(
            ref, arch, cache, go, go_version, kube_version, log
        )
        rel = image_path(ref, arch)
        place(
            bundle,
            arch,
            files,
            Entry(IMAGE, ref, rel, built.sha256, built.source, BUILT, built.extra["digest"]),
            built.path,
        )
        done.append(built)
    return done


def build(ref: str, arch: str, cache: Path, go: GoTool, go_version: str, kube_version: str, log: Log) -> Built:
    """Build the image `ref` for `arch` into the cache."""
    recipe = recipe_for(ref)
    tag = oci.split_ref(ref)[2]
    start = time.monotonic()
    work = cache / "work" / image_path(ref, arch).removesuffix("/image.oci.tar")
    if recipe.go is None:
        program, source = _pause(tag, arch, kube_version, work, go, log)
    else:
        version = recipe.module_version(tag)
        binaries, info = compile_recipe(recipe.go, version, arch, work, go, go_version, log)
        program = next(iter(binaries.values())).read_bytes()
        source = provenance(recipe.go, version, info, go_version)
        if recipe.substitute:
            source += f"; {recipe.substitute[1]}"
    files = {e.path: e for p in recipe.programs for e in program_entries(p)}  # one copy of a shared library
    entries = (LayerFile(recipe.path, program), *files.values())
    labels = {"org.opencontainers.image.version": tag, "org.opencontainers.image.description": source}
    image = oci.Image(ref, arch, entries, recipe.entrypoint, recipe.user, labels=labels)
    target = cache_target(cache, ref, arch)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = oci.write_archive(image, partial)
    built = finish(
        IMAGE,
        ref,
        target,
        partial,
        image_key(recipe, ref, arch, go_version, kube_version),
        source,
        work,
        {"digest": digest},
    )
    built.seconds = time.monotonic() - start
    log(f"built image {ref} ({digest[:19]}) in {built.seconds:.0f} s")
    return built


def _pause(tag: str, arch: str, kube_version: str, work: Path, go: GoTool, log: Log) -> tuple[bytes, str]:
    """pause, compiled as upstream's build/pause/Makefile does (static, -Os), from the Kubernetes module."""
    if arch != go.output(["env", "GOHOSTARCH"]).strip():
        raise BuildError(
            f"pause for {arch}: kubefab compiles it with this machine's gcc, which targets "
            f"{go.output(['env', 'GOHOSTARCH']).strip()} only"
        )
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    info = module_info(go, work, "k8s.io/kubernetes", f"v{kube_version}")
    source = Path(info["dir"]) / "build/pause/linux/pause.c"
    log(f"building image pause {tag} from {source.relative_to(info['dir'])} of k8s.io/kubernetes@v{kube_version}")
    out = work / "pause"
    proc = subprocess.run(
        ["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{tag}-kubefab", "-o", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"gcc {source}:\n{proc.stderr[-2000:]}")
    subprocess.run(["strip", str(out)], check=True)
    return out.read_bytes(), (
        f"built from source: build/pause/linux/pause.c of k8s.io/kubernetes@v{kube_version} "
        f"({info['sum']}), gcc -Os -static"
    )
