"""`fab deploy`, `fab plan` and `fab bundle`: load, plan, apply, report. The logic lives in
playbooks.phases / playbooks.apply; these tasks only wire it to the command line."""

from __future__ import annotations

import difflib
import time

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from pki.store import kubeconfig_dir
from playbooks import bundle, images, source, ui
from playbooks.apply import Assessment, assess
from playbooks.model import Cluster, Host
from playbooks.phases import PHASES, DeployFailed, Deployment, PhaseResult
from playbooks.plan import Plan
from playbooks.plans import HOST_PHASES
from playbooks.plans.addons import AddonError
from playbooks.plans.inputs import Inputs, stack_of
from playbooks.preflight import Finding
from playbooks.remote import StepFailed
from playbooks.tasks.common import gather_inputs, load_cluster
from playbooks.versions import cni_release

INVENTORY_HELP = "cluster YAML file (default: $KUBEFAB_INVENTORY)"


def select(only: str | None, skip: str | None) -> list[str]:
    """The phases to run, in deploy order, from --only/--skip (comma-separated names)."""
    def names(value: str | None) -> list[str]:
        chosen = [n.strip() for n in (value or "").split(",") if n.strip()]
        unknown = [n for n in chosen if n not in PHASES]
        if unknown:
            raise Exit(f"unknown phase(s) {', '.join(unknown)}; phases: {', '.join(PHASES)}", code=2)
        return chosen

    wanted, skipped = names(only), names(skip)
    return [p for p in PHASES if p != "preflight" and (not wanted or p in wanted) and p not in skipped]


def prepared(c: Context, inventory: str | None, phases: list[str]) -> tuple[Cluster, Inputs]:
    """Everything checked on this machine before any host is touched: inventory, PKI, secrets, and every bundle
    file the phases will read (with the add-ons phase: the CNI manifest and the images it imports)."""
    cluster = load_cluster(c, inventory)
    inputs = gather_inputs(cluster)
    addons = "addons" in phases and bool(cluster.addons)
    problems = bundle.verify(cluster, inputs.stack, inputs.arch, addons=addons)
    if problems:
        raise Exit("the bundle is not ready; no host was touched:\n" + "\n".join(problems), code=1)
    return cluster, inputs


def show_preflight(findings: list[Finding]) -> None:
    ui.table("preflight", ["host", "check", "result", "detail"],
             [(f.host, f.check, f.status.upper() if f.status != "ok" else "ok", f.detail) for f in findings])


def run_preflight(d: Deployment) -> None:
    try:
        findings = d.preflight()
    except DeployFailed as exc:
        raise Exit(f"preflight: {exc}", code=1) from None
    show_preflight(findings)
    failed = [f for f in findings if f.status == "fail"]
    if failed:
        raise Exit(f"preflight: {len(failed)} problem(s); nothing was changed", code=1)


def summary(results: list[PhaseResult], cluster: Cluster) -> None:
    rows = [(r.name, host, len(t.changed), t.unchanged, " ".join(t.started) or "-", " ".join(t.restarted) or "-",
             t.failed or "-", f"{r.seconds:.1f}")
            for r in results for host, t in sorted(r.hosts.items())]
    ui.table(f"deploy of {cluster.name}",
             ["phase", "host", "changed", "unchanged", "started", "restarted", "failed", "phase s"], rows)
    for r in results:
        if r.note:
            ui.out.print(f"{r.name}: {r.note}")


@task(auto_shortflags=False, help={
    "inventory": INVENTORY_HELP,
    "only": f"run only these phases (comma-separated: {', '.join(PHASES[1:])}); preflight always runs",
    "skip": "skip these phases (comma-separated)",
    "verbose": "show every command run on the hosts",
    "command_timeout": "seconds before a command on a host counts as failed (default 300)",
})
def deploy(c: Context, inventory: str | None = None, only: str | None = None, skip: str | None = None,
           verbose: bool = False, command_timeout: int = 300) -> None:
    """Take the inventory's hosts to a running HA cluster; a second run changes nothing."""
    phases = select(only, skip)
    cluster, inputs = prepared(c, inventory, phases)

    def report(host: str, text: str) -> None:
        ui.out.print(f"  {host:<14} {text}")

    d = Deployment(cluster, inputs, report, report if verbose else None, command_timeout)
    started = time.monotonic()
    try:
        run_preflight(d)
        d.start_prefetch(phases)
        for name in phases:
            ui.out.print(f"[bold]== {name}[/]")
            d.phase(name)
    except DeployFailed as exc:
        summary(d.results, cluster)
        raise Exit(f"deploy stopped: {exc}\nfix the cause and run `kubefab deploy` again: finished work is kept and "
                   "only what still differs is changed", code=1) from None
    finally:
        d.close()
    summary(d.results, cluster)
    changes = sum(r.changes() for r in d.results)
    ui.out.print(f"deploy finished in {time.monotonic() - started:.1f} s: {changes} change(s)")
    ui.out.print(f"admin kubeconfig: {kubeconfig_dir(cluster) / 'admin.conf'}  (server {cluster.server_url})")


@task(auto_shortflags=False, help={"inventory": INVENTORY_HELP,
                                   "only": "phases to show (comma-separated)", "skip": "phases to leave out"})
def plan(c: Context, inventory: str | None = None, only: str | None = None, skip: str | None = None) -> None:
    """Show, per host, what deploy would change (unified diffs, steps, services); change nothing."""
    phases = [p for p in select(only, skip) if p in HOST_PHASES]
    cluster, inputs = prepared(c, inventory, phases)
    d = Deployment(cluster, inputs, lambda host, text: None)
    try:
        run_preflight(d)
        total = 0
        for name in phases:
            for host in cluster.hosts:
                p = HOST_PHASES[name](d.with_facts(), host)
                if p is None:
                    continue
                found = assess(d.remote(host), p, cluster.bundle_dir)
                lines = describe_changes(d, host, p, found)
                total += len(lines)
                for line in lines:
                    ui.out.print(f"{host.name} {name}: {line}", markup=False)
    except StepFailed as exc:
        raise Exit(str(exc), code=1) from None
    finally:
        d.close()
    ui.out.print(f"{total} change(s) would be made" if total else "no changes: the hosts match the inventory")


def describe_changes(d: Deployment, host: Host, p: Plan, found: Assessment) -> list[str]:
    lines = []
    for f in found.files:
        current = d.run(host, "plan: read current file", f"cat {f.path} 2>/dev/null", check=False).stdout
        if f.secret:
            lines.append(f"~ {f.path} ({'new' if not current else 'changed'}; secret content not shown)")
            continue
        diff = difflib.unified_diff(current.splitlines(keepends=True), f.content.decode().splitlines(keepends=True),
                                    f"{host.name}:{f.path}", "kubefab")
        lines.append(f"~ {f.path}\n" + "".join(diff).rstrip())
    lines += [f"~ {f.path}: mode {f.mode:04o}, owner {f.owner}:{f.group}" for f in found.perms]
    for b, current, new in found.blocks:
        diff = difflib.unified_diff(current.splitlines(keepends=True), new.splitlines(keepends=True),
                                    f"{host.name}:{b.path}", "kubefab")
        lines.append(f"~ {b.path} (block {b.marker})\n" + "".join(diff).rstrip())
    lines += [f"+ binary {b.path} from {b.source}" for b in found.binaries]
    lines += [f"+ directory {x.path} {x.mode:04o} {x.owner}:{x.group}" for x in found.directories]
    lines += [f"+ user {u}" for u in found.users]
    lines += [f"! step: {s.name}" for s in found.steps]
    notified = {s for f in found.files + found.perms for s in f.notifies} | {s for b in found.binaries
                                                                             for s in b.notifies}
    for s in p.services:
        enabled, active = found.services.get(s, ("", ""))
        if enabled != "enabled" or active != "active":
            lines.append(f"> start {s} (now {enabled or 'absent'}/{active or 'absent'})")
        elif s in notified:
            lines.append(f"> restart {s}")
    return lines


@task(name="bundle", auto_shortflags=False, help={
    "inventory": INVENTORY_HELP, "arch": "amd64 or arm64 (default amd64)",
    "mirror": "base URL of an internal mirror laid out by upstream host name (e.g. http://mirror/kube serves "
              "http://mirror/kube/dl.k8s.io/...); checksums are verified the same way",
    "from-source": "build the release files from their pinned Go modules with this machine's go toolchain and "
                   f"module proxy instead of downloading them (cached under ${source.CACHE_ENV}, default "
                   f"{source.DEFAULT_CACHE})",
})
def fetch_bundle(c: Context, inventory: str | None = None, arch: str = "amd64", mirror: str | None = None,
                 from_source: bool = False) -> None:
    """Download the pinned release files for the inventory into its bundle directory, verifying checksums, or
    build them from source (--from-source)."""
    cluster = load_cluster(c, inventory)
    stack = stack_of(cluster)
    if from_source:
        start = time.monotonic()
        releases = bundle.required(cluster, stack, arch)
        cni = f"{cluster.cni}_manifest"
        if "cni" in cluster.addons and source.buildable(cni):
            releases.append(cni_release(cluster.cni, stack))
        try:
            built = source.fill_bundle(cluster.bundle_dir, releases, source.cache_dir(), log=ui.out.print)
            refs = [r for r in bundle.required_images(cluster, stack) if images.buildable(r)]
            built += images.fill_images(cluster.bundle_dir, refs, arch, source.cache_dir(), stack.kubernetes,
                                        log=ui.out.print)
        except source.BuildError as exc:
            raise Exit(f"bundle --from-source: {exc}", code=1) from None
        ui.table(f"bundle in {cluster.bundle_dir} ({time.monotonic() - start:.0f} s)",
                 ["component", "version", "built", "sha256"],
                 [(b.component, b.version, "cached" if b.cached else f"{b.seconds:.0f} s", b.sha256[:16])
                  for b in built])
        if "cni" in cluster.addons and not source.buildable(cni):
            ui.out.print(f"note: the {cluster.cni} manifest and images are not built from source; `kubefab bundle` "
                         "fetches them")
        return
    try:
        problems = bundle.download(cluster, stack, arch, log=ui.out.print, mirror=mirror)
    except AddonError as exc:
        raise Exit(str(exc), code=1) from None
    if problems:
        raise Exit("\n".join(problems), code=1)
    ui.out.print(f"bundle ready in {cluster.bundle_dir}")
