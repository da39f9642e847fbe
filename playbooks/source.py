"""Release files built from source: the pinned versions compiled with the machine's Go toolchain through its
configured module proxy, then packed in the shape of the upstream release file, so a deploy cannot tell them
apart except by the manifest entry saying how each was made.

Provenance: a wrapper module per component requires the pinned module versions and nothing else; `go mod
tidy` writes its go.sum, which the go command checks against the checksum database (GOSUMDB, as the user
configured it) before any source is compiled. Builds are cached twice: Go's own build cache, and the finished
release file per version under the kubefab cache directory, keyed by everything that went into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubefab.playbooks.archive import Member, write_tar_gz
from kubefab.playbooks.bundle import BUILT, Entry, Manifest, file_digest, read_manifest, write_manifest
from kubefab.playbooks.versions import Release, release

HELPERS = Path(__file__).parent / "data" / "reference"
CACHE_ENV = "KUBEFAB_CACHE_DIR"
DEFAULT_CACHE = Path("/var/cache/kubefab")
# Bump when a recipe's packing or build flags change, so cached release files are rebuilt.
RECIPE_REVISION = 1

Log = Callable[[str], None]


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Command:
    package: str  # Go import path of the main package
    name: str  # the file name in the release
    tags: tuple[str, ...] = ()
    cgo: bool = False
    static: bool = False  # cgo linked statically (runc, as upstream's release binary)


@dataclass(frozen=True)
class Recipe:
    component: str  # as in the versions table
    modules: tuple[str, ...]  # required at the release version; the first one names the release
    commands: tuple[Command, ...]
    # -X flags; {version} {major} {minor} {commit} {date} are filled in. The version variables upstream's
    # release scripts set, so `--version` prints the release it is.
    ldflags: tuple[str, ...]
    packages: tuple[str, ...] = ()  # Debian packages the build needs (cgo headers and static libraries)
    # A Go program of playbooks/data/reference/ built in the same module and run once after the build; its
    # output is kept beside the release file as <file>.<name>.json (the configuration field reference).
    helper: str | None = None
    # Dependencies pinned to another version than the module asks for, because the module proxy does not
    # serve that one: (module, version, why). Recorded in the provenance of what is built.
    overrides: tuple[tuple[str, str, str], ...] = ()

    @property
    def module(self) -> str:
        return self.modules[0]


def _kube_version_flags() -> tuple[str, ...]:
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"{pkg}.gitVersion=v{{version}}",
            f"{pkg}.gitMajor={{major}}",
            f"{pkg}.gitMinor={{minor}}",
            f"{pkg}.gitCommit={{commit}}",
            f"{pkg}.gitTreeState=clean",
            f"{pkg}.buildDate={{date}}",
        ]
    return tuple(flags)


KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl")
# The plugins of upstream's release archive (not the Windows ones or the sample).
CNI_PLUGINS = {
    "main": ("bridge", "dummy", "host-device", "ipvlan", "loopback", "macvlan", "ptp", "tap", "vlan"),
    "ipam": ("dhcp", "host-local", "static"),
    "meta": ("bandwidth", "firewall", "portmap", "sbr", "tuning", "vrf"),
}
CONTAINERD = "github.com/containerd/containerd/v2"

RECIPES = {
    r.component: r
    for r in (
        Recipe(
            "kubernetes_server",
            ("k8s.io/kubernetes",),
            tuple(Command(f"k8s.io/kubernetes/cmd/{n}", n) for n in KUBE_COMMANDS),
            _kube_version_flags(),
            helper="fields",
        ),
        Recipe(
            "etcd",
            ("go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3"),
            (
                Command("go.etcd.io/etcd/server/v3", "etcd"),
                Command("go.etcd.io/etcd/etcdctl/v3", "etcdctl"),
                Command("go.etcd.io/etcd/etcdutl/v3", "etcdutl"),
            ),
            ("go.etcd.io/etcd/api/v3/version.GitSHA={commit}",),
        ),
        Recipe(
            "containerd",
            (CONTAINERD,),
            (
                Command(f"{CONTAINERD}/cmd/containerd", "containerd", ("urfave_cli_no_docs",)),
                Command(f"{CONTAINERD}/cmd/ctr", "ctr", ("urfave_cli_no_docs",)),
                Command(
                    f"{CONTAINERD}/cmd/containerd-shim-runc-v2",
                    "containerd-shim-runc-v2",
                    ("urfave_cli_no_docs", "no_grpc"),
                ),
            ),
            (
                f"{CONTAINERD}/version.Version=v{{version}}",
                f"{CONTAINERD}/version.Revision={{commit}}",
                f"{CONTAINERD}/version.Package=github.com/containerd/containerd/v2",
            ),
        ),
        Recipe(
            "runc",
            ("github.com/opencontainers/runc",),
            (
                Command(
                    "github.com/opencontainers/runc",
                    "runc",
                    ("seccomp", "urfave_cli_no_docs", "netgo", "osusergo"),
                    cgo=True,
                    static=True,
                ),
            ),
            ("main.version={version}", "main.gitCommit={commit}"),
            packages=("libseccomp-dev", "pkg-config"),
        ),
        Recipe(
            "cni_plugins",
            ("github.com/containernetworking/plugins",),
            tuple(
                Command(f"github.com/containernetworking/plugins/plugins/{kind}/{n}", n)
                for kind, names in CNI_PLUGINS.items()
                for n in names
            ),
            ("github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v{version}",),
        ),
        Recipe(
            "crictl",
            ("sigs.k8s.io/cri-tools",),
            (Command("sigs.k8s.io/cri-tools/cmd/crictl", "crictl"),),
            ("sigs.k8s.io/cri-tools/pkg/version.Version=v{version}",),
        ),
    )
}


# Release files that are a file of a module's source tree at the release's tag, not a build: flannel publishes
# its manifest as a release asset, and the same file is in its module.
SOURCE_FILES = {"flannel_manifest": ("github.com/flannel-io/flannel", "Documentation/kube-flannel.yml")}


def buildable(component: str) -> bool:
    return component in RECIPES or component in SOURCE_FILES


def cache_dir(env: dict[str, str] | os._Environ = os.environ) -> Path:
    return Path(env.get(CACHE_ENV) or DEFAULT_CACHE)


# -- pure parts ------------------------------------------------------------------------------------------------


def companion_version(module: str, version: str) -> str:
    """The published version of a module that `module`'s own go.mod replaces with a directory of its repo.
    Kubernetes publishes its staging modules as v0.<minor>.<patch>; etcd its sub-modules at its own version."""
    if module == "k8s.io/kubernetes":
        return "v0." + version.split(".", 1)[1]
    return "v" + version


def local_replaces(gomod: str) -> list[str]:
    """Modules a go.mod replaces with a directory inside its own repository (`=> ./x` or `=> ../x`), which a
    module that depends on it must pin to published versions itself; placeholders like upstream's
    FORBIDDEN_DEPENDENCY are skipped."""
    line = re.compile(r"^[ \t]*(?:replace[ \t]+)?([^\s(]\S*)(?:[ \t]+v\S+)?[ \t]+=>[ \t]+(\.\.?/\S*)[ \t]*$", re.M)
    return [left for left, right in line.findall(gomod) if "FORBIDDEN" not in right]


def wrapper_gomod(recipe: Recipe, version: str, go_version: str, companions: list[str]) -> str:
    """The go.mod of the build module: the release's modules at the pinned version, every companion replaced
    by its published version (a replace only: ones the commands do not import need not exist), and the
    commands as tools."""
    v = "v" + version
    lines = [f"module kubefab.build/{recipe.component}", "", f"go {go_version}", "", "require ("]
    lines += [f"\t{m} {v}" for m in sorted(recipe.modules)]
    lines += [")", ""]
    replaced = {m: companion_version(recipe.module, version) for m in companions if m not in recipe.modules}
    replaced |= {m: v for m, v, _ in recipe.overrides}
    if replaced:
        lines += ["replace ("]
        lines += [f"\t{m} => {m} {v}" for m, v in sorted(replaced.items())] + [")", ""]
    lines += ["tool ("] + [f"\t{c.package}" for c in recipe.commands] + [")", ""]
    return "\n".join(lines)


def ldflags(recipe: Recipe, version: str, commit: str, date: str) -> str:
    major, minor = version.split(".")[:2]
    values = {"version": version, "major": major, "minor": minor, "commit": commit or "unknown", "date": date}
    return " ".join(["-s", "-w", *(f"-X {flag.format(**values)}" for flag in recipe.ldflags)])


def build_groups(recipe: Recipe) -> list[tuple[tuple[str, ...], bool, bool, list[Command]]]:
    """Commands sharing tags and cgo settings go into one `go build`, which compiles their common packages
    once (Kubernetes' six commands share most of theirs)."""
    groups: dict[tuple[tuple[str, ...], bool, bool], list[Command]] = {}
    for c in recipe.commands:
        groups.setdefault((c.tags, c.cgo, c.static), []).append(c)
    return [(tags, cgo, static, cmds) for (tags, cgo, static), cmds in groups.items()]


def default_binary_name(package: str) -> str:
    """What `go build -o DIR/` names a main package: its last path element, a /vN suffix skipped."""
    parts = package.split("/")
    if re.fullmatch(r"v\d+", parts[-1]) and len(parts) > 1:
        return parts[-2]
    return parts[-1]


def pack_members(component: str, version: str, arch: str, binaries: dict[str, Path]) -> dict[str, Member] | None:
    """The members of the release archive in upstream's layout; None for a release that is a bare binary."""
    match component:
        case "kubernetes_server":
            top = "kubernetes/server/bin/"
            return {
                "kubernetes/": None,
                "kubernetes/server/": None,
                top: None,
                **{top + n: p for n, p in binaries.items()},
            }
        case "etcd":
            top = f"etcd-v{version}-linux-{arch}/"
            return {top: None, **{top + n: p for n, p in binaries.items()}}
        case "containerd":
            return {"bin/": None, **{"bin/" + n: p for n, p in binaries.items()}}
        case "cni_plugins":
            return {"./": None, **{"./" + n: p for n, p in binaries.items()}}
        case "crictl":
            return dict(binaries)
        case "runc":
            return None
    raise ValueError(f"no release layout for {component}")


# -- the build ---------------------------------------------------------------------------------------------------


@dataclass
class Built:
    component: str
    version: str
    path: Path  # the release file in the cache
    sha256: str
    source: str  # how it was made, for the bundle manifest
    seconds: float = 0.0
    cached: bool = False
    extra: dict = field(default_factory=dict)  # what the stamp records besides (an image's digest)


@dataclass
class GoTool:
    """The machine's go command, with the user's environment (GOPROXY, GOFLAGS, GONOSUMDB, GOCACHE ...)."""

    # The machine's go; /usr/local/go is where the official toolchain installs when it is not on PATH.
    go: str = field(default_factory=lambda: shutil.which("go") or "/usr/local/go/bin/go")
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def version(self) -> str:
        """'1.26.8' from `go env GOVERSION` (go1.26.8)."""
        return self.output(["env", "GOVERSION"]).strip().removeprefix("go")

    def output(
        self, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True
    ) -> str:
        proc = subprocess.run(
            [self.go, *args], cwd=cwd, capture_output=True, text=True, env={**self.env, **(env or {})}, check=False
        )
        if check and proc.returncode != 0:
            said = (proc.stderr.strip() or proc.stdout.strip())[-3000:]
            raise BuildError(f"`go {' '.join(args)}` in {cwd} exited {proc.returncode}:\n{said}")
        return proc.stdout


def module_info(go: GoTool, work: Path, module: str, version: str) -> dict:
    """`go mod download -json`: the module's go.mod file and, where the proxy knows it, its VCS commit."""
    work.mkdir(parents=True, exist_ok=True)
    doc = json.loads(go.output(["mod", "download", "-json", f"{module}@{version}"], cwd=work, check=False) or "{}")
    if doc.get("Error") or "GoMod" not in doc:
        raise BuildError(doc.get("Error") or f"{module}@{version}: not downloadable")
    info = json.loads(Path(doc["Info"]).read_text())
    return {
        "gomod": Path(doc["GoMod"]).read_text(),
        "commit": (info.get("Origin") or {}).get("Hash", ""),
        "time": info.get("Time", "1970-01-01T00:00:00Z"),
        "sum": doc.get("Sum", ""),
        "dir": doc.get("Dir", ""),
    }


def recipe_key(recipe: Recipe, version: str, arch: str, go_version: str) -> str:
    text = json.dumps(
        {"recipe": repr(recipe), "version": version, "arch": arch, "go": go_version, "revision": RECIPE_REVISION},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def release_key(component: str, version: str, arch: str, go_version: str) -> str:
    if component in SOURCE_FILES:
        text = json.dumps({"file": SOURCE_FILES[component], "version": version, "revision": RECIPE_REVISION})
        return hashlib.sha256(text.encode()).hexdigest()
    return recipe_key(RECIPES[component], version, arch, go_version)


def cached(component: str, version: str, arch: str, cache: Path, go_version: str) -> Built | None:
    """The release file built earlier from the same recipe, version, architecture and Go version, if any."""
    target = cache / "source" / release(component, version, arch).bundle_path
    return stamped(target, release_key(component, version, arch, go_version), component, version)


def stamped(target: Path, key: str, component: str, version: str) -> Built | None:
    """What `finish` left at `target`, if it was made from the same inputs (`key`)."""
    stamp = target.with_name(target.name + ".built")
    if not (target.is_file() and stamp.is_file()):
        return None
    record = json.loads(stamp.read_text())
    if record.get("key") != key:
        return None
    extra = {k: v for k, v in record.items() if k not in ("key", "sha256", "source")}
    return Built(component, version, target, record["sha256"], record["source"], cached=True, extra=extra)


def copy_source_file(
    component: str, version: str, arch: str, cache: Path, go: GoTool, go_version: str, log: Log
) -> Built:
    """A SOURCE_FILES release: the file as the module at the release's tag holds it."""
    module, name = SOURCE_FILES[component]
    work = cache / "work" / f"{component}-{version}"
    work.mkdir(parents=True, exist_ok=True)
    info = module_info(go, work, module, f"v{version}")
    target = cache / "source" / release(component, version, arch).bundle_path
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    shutil.copyfile(Path(info["dir"]) / name, partial)
    log(f"took {component} {version} from {name} of {module}@v{version}")
    return finish(
        component,
        version,
        target,
        partial,
        release_key(component, version, arch, go_version),
        f"from source: {name} of {module}@v{version} ({info['sum']})",
        work,
    )


def compile_recipe(
    recipe: Recipe, module_version: str, arch: str, work: Path, go: GoTool, go_version: str, log: Log
) -> tuple[dict[str, Path], dict]:
    """`go build` of the recipe's commands at `module_version` in a fresh wrapper module under `work`; returns
    the binaries by release name and the module's info (go.mod, commit, go.sum line)."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    log(
        f"building {recipe.component} {module_version} ({arch}) from {recipe.module}@v{module_version} "
        f"with go {go_version} ..."
    )
    info = module_info(go, work, recipe.module, "v" + module_version)
    (work / "go.mod").write_text(wrapper_gomod(recipe, module_version, go_version, local_replaces(info["gomod"])))
    if recipe.helper:
        (work / recipe.helper).mkdir()
        shutil.copyfile(HELPERS / f"{recipe.helper}.go", work / recipe.helper / "main.go")
    # Resolves the graph and writes go.sum; every module's hash is checked against the checksum database.
    go.output(["mod", "tidy"], cwd=work)
    flags = ldflags(recipe, module_version, info["commit"], info["time"])
    env = {"GOOS": "linux", "GOARCH": arch}
    for tags, cgo, static, commands in build_groups(recipe):
        args = ["build", "-v", "-trimpath", "-o", str(work / "out") + "/"]
        if tags:
            args += ["-tags", ",".join(tags)]
        args += ["-ldflags", flags + (" -extldflags -static" if static else "")]
        _go_build(
            go,
            work,
            args,
            [c.package for c in commands],
            {**env, "CGO_ENABLED": "1" if cgo else "0"},
            f"{recipe.component} {module_version}",
            log,
        )
    return {c.name: work / "out" / default_binary_name(c.package) for c in recipe.commands}, info


def provenance(recipe: Recipe, version: str, info: dict, go_version: str) -> str:
    text = (
        f"built from source: {recipe.module}@v{version} ({info['sum']}), go {go_version}, "
        "module checksums verified by go.sum against the checksum database"
    )
    return text + "".join(f"; {m} {v}: {why}" for m, v, why in recipe.overrides)


def build(component: str, version: str, arch: str, cache: Path, go: GoTool, go_version: str, log: Log = print) -> Built:
    """The release file for `component` `version`, built now into the cache."""
    recipe = RECIPES[component]
    target = cache / "source" / release(component, version, arch).bundle_path
    start = time.monotonic()
    work = cache / "work" / f"{component}-{version}-{arch}"
    binaries, info = compile_recipe(recipe, version, arch, work, go, go_version, log)
    target.parent.mkdir(parents=True, exist_ok=True)
    if recipe.helper:
        go.output(["build", "-o", str(work / "out" / ".helper"), f"./{recipe.helper}"], cwd=work)
        helper_output(target, recipe.helper).write_text(
            subprocess.run([work / "out" / ".helper"], capture_output=True, text=True, check=True).stdout
        )
    partial = target.with_name(target.name + ".part")
    members = pack_members(component, version, arch, binaries)
    if members is None:
        shutil.copyfile(next(iter(binaries.values())), partial)
    else:
        with partial.open("wb") as out:
            write_tar_gz(out, members, level=1)  # fast: deploy re-compresses each binary for the wire anyway
    built = finish(
        component,
        version,
        target,
        partial,
        recipe_key(recipe, version, arch, go_version),
        provenance(recipe, version, info, go_version),
        work,
    )
    built.seconds = time.monotonic() - start
    log(f"built {component} {version} in {built.seconds:.0f} s")
    return built


def finish(
    component: str,
    version: str,
    target: Path,
    partial: Path,
    key: str,
    source: str,
    work: Path,
    extra: dict | None = None,
) -> Built:
    """Move a finished build into the cache with its stamp (what `cached` reads) and go.sum."""
    digest = file_digest(partial, "sha256")
    partial.rename(target)
    stamp = target.with_name(target.name + ".built")
    stamp.write_text(json.dumps({"key": key, "sha256": digest, "source": source, **(extra or {})}) + "\n")
    if (work / "go.sum").is_file():
        shutil.copyfile(work / "go.sum", target.with_name(target.name + ".go.sum"))
    shutil.rmtree(work / "out", ignore_errors=True)
    return Built(component, version, target, digest, source, extra=extra or {})


def helper_output(target: Path, helper: str) -> Path:
    return target.with_name(f"{target.name}.{helper}.json")


def _go_build(
    go: GoTool, work: Path, args: list[str], packages: list[str], env: dict[str, str], what: str, log: Log
) -> None:
    """`go build -v`, reporting how many packages it has compiled every 15 seconds (a cold Kubernetes build
    takes many minutes on two cores)."""
    total = len(go.output(["list", "-deps", *packages], cwd=work, env=env).split())
    proc = subprocess.Popen(
        [go.go, *args, *packages],
        cwd=work,
        env={**go.env, **env},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    compiled, tail, start = 0, [], time.monotonic()
    done = threading.Event()

    def progress() -> None:
        while not done.wait(15):
            log(f"  {what}: {compiled} of at most {total} packages compiled, {time.monotonic() - start:.0f} s")

    reporter = threading.Thread(target=progress, daemon=True)
    reporter.start()
    said: list[str] = []  # what is not a package name (-v prints one per package compiled): the errors
    for line in proc.stdout:
        compiled += 1
        tail = [*tail[-40:], line.rstrip()]
        if line.startswith("#") or ": " in line:
            said = [*said[-60:], line.rstrip()]
    done.set()
    if proc.wait() != 0:
        raise BuildError(f"go build for {what} failed:\n" + "\n".join(said or tail))


def fill_bundle(
    bundle: Path, releases: list[Release], cache: Path, go: GoTool | None = None, log: Log = print
) -> list[Built]:
    """Build (or take from the cache) every release file in `releases` and put it in the bundle, recording
    each in the manifest. Before anything is built, every module to build must be served and every Debian
    package the builds need installed: a missing one stops the run at once, not after minutes of building."""
    go = go or GoTool()
    go_version = go.version()
    arch = releases[0].arch
    manifest = read_manifest(bundle) or Manifest(arch, {})
    if manifest.arch != arch:
        raise BuildError(f"{bundle}: holds a bundle for {manifest.arch}, not {arch}; use another bundle directory")
    found = {r: cached(r.component, r.version, r.arch, cache, go_version) for r in releases}
    to_build = [r for r, b in found.items() if b is None]
    missing = sorted(
        {p for r in to_build if r.component in RECIPES for p in RECIPES[r.component].packages if not has_package(p)}
    )
    if missing:
        raise BuildError(
            f"building from source needs the Debian package(s) {', '.join(missing)}: "
            f"apt-get install {' '.join(missing)}"
        )
    unavailable = []
    for r in to_build:
        try:
            module = RECIPES[r.component].module if r.component in RECIPES else SOURCE_FILES[r.component][0]
            module_info(go, cache / "work", module, f"v{r.version}")
        except BuildError as exc:
            unavailable.append(f"  {r.component} {r.version}: {exc}")
    if unavailable:
        raise BuildError(
            "the module proxy does not serve these pinned versions (set `versions:` in the inventory "
            "to ones it serves, or download the official files with `kubefab bundle`):\n" + "\n".join(unavailable)
        )
    bundle.mkdir(parents=True, exist_ok=True)
    files = dict(manifest.files)
    done = []
    for r in releases:
        make = copy_source_file if r.component in SOURCE_FILES else build
        built = found[r] or make(r.component, r.version, r.arch, cache, go, go_version, log)
        place(
            bundle,
            arch,
            files,
            Entry(r.component, r.version, r.bundle_path, built.sha256, built.source, BUILT),
            built.path,
        )
        done.append(built)
    return done


def place(bundle: Path, arch: str, files: dict[str, Entry], entry: Entry, made: Path) -> None:
    """Put a file made in the cache into the bundle at `entry.path` and record it in the manifest, unless the
    same file is there already."""
    path = bundle / entry.path
    now = files.get(entry.path)
    if now and now.built and now.sha256 == entry.sha256 and path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    try:
        os.link(made, path)  # the cache is usually on the same file system: no copy
    except OSError:
        shutil.copyfile(made, path)
    files[entry.path] = entry
    write_manifest(bundle, Manifest(arch, files))


def has_package(name: str) -> bool:
    """Installed, as dpkg says; on a machine without dpkg the build itself reports what it lacks."""
    if shutil.which("dpkg-query") is None:
        return True
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False)
    return proc.returncode == 0 and "install ok installed" in proc.stdout
