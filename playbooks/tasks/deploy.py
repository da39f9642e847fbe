"""`fab deploy`, `fab plan` and `fab bundle`: load, plan, apply, report. The logic lives in
playbooks.runner / playbooks.apply; these tasks only wire it to the command line."""

from __future__ import annotations

import time
from dataclasses import dataclass

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.pki.store import kubeconfig_dir
from kubefab.playbooks import bundle, components, images, secrets, source, ui
from kubefab.playbooks import limit as limits
from kubefab.playbooks.clusterdir import Prepared
from kubefab.playbooks.components.addons import AddonError
from kubefab.playbooks.diffs import file_diff
from kubefab.playbooks.findings import Finding
from kubefab.playbooks.inputs import Inputs, stack_of
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.remote import Remote, StepFailed
from kubefab.playbooks.runner import PHASES, DeployFailed, PhaseResult, Preview, Runner
from kubefab.playbooks.tasks.common import committed, load_cluster, prepare_or_exit
from kubefab.playbooks.versions import cni_release

INVENTORY_HELP = "cluster YAML file (default: $KUBEFAB_INVENTORY)"
LIMIT_HELP = (
    "only these hosts (comma-separated names); refused for etcd membership changes, certificate rotation and "
    "the cluster-wide add-ons phase"
)


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


@dataclass(frozen=True)
class Ready:
    """What a deploy or plan goes ahead with, all decided on this machine before any host is touched."""

    cluster: Cluster
    prep: Prepared
    hosts: list[Host] | None  # --limit's hosts, or None for all
    phases: list[str]


def prepared(
    inventory: str | None,
    phases: list[str],
    limit: str | None = None,
    only: str | None = None,
    renew_all: bool = False,
) -> Ready:
    """Everything checked on this machine before any host is touched: inventory, `--limit`, PKI, secrets
    (decided in memory, nothing written), and every bundle file the phases will read (with the add-ons phase:
    the CNI manifest and the images it imports)."""
    cluster = load_cluster(inventory)
    try:
        hosts = limits.limited_hosts(cluster, limit)
    except limits.LimitError as exc:
        raise Exit(str(exc), code=2) from None
    prep = prepare_or_exit(cluster, renew_all)
    if hosts is not None:
        phases = limited_phases(hosts, prep, only, phases)
    inputs = prep.inputs
    addons = "addons" in phases and bool(cluster.addons)
    problems = bundle.verify(
        cluster, components.releases(cluster, inputs.stack, inputs.arch), inputs.stack, inputs.arch, addons=addons
    )
    if problems:
        raise Exit("the bundle is not ready; no host was touched:\n" + "\n".join(problems), code=1)
    return Ready(cluster, prep, hosts, phases)


def limited_phases(hosts: list[Host], prep: Prepared, only: str | None, phases: list[str]) -> list[str]:
    """The phases a limited run keeps (the cluster-wide ones are left out, saying so), or exit 2 with every
    reason the limited run is refused."""
    explicit = [n.strip() for n in (only or "").split(",")]
    reasons = limits.refusals(phases, explicit, prep.pki.rows, prep.secrets.write is not None)
    if reasons:
        raise Exit("--limit refused; no host was touched:\n" + "\n".join(f"  {r}" for r in reasons), code=2)
    kept = limits.without_cluster_wide(phases)
    if kept != phases:
        left = ", ".join(p for p in phases if p not in kept)
        ui.err.print(f"--limit {','.join(h.name for h in hosts)}: phase {left} is cluster-wide and is left out")
    return kept


def show_preflight(findings: list[Finding]) -> None:
    ui.table(
        "preflight",
        ["host", "check", "result", "detail"],
        [(f.host, f.check, f.status.upper() if f.status != "ok" else "ok", f.detail) for f in findings],
    )


def runner(
    cluster: Cluster,
    inputs: Inputs,
    report=lambda host, text: None,
    verbose: bool = False,
    command_timeout: int = 300,
    limit: list[Host] | None = None,
) -> Runner:
    def connect(host: Host) -> Remote:
        return Remote(cluster, host, report if verbose else None, timeout=command_timeout)

    return Runner(cluster, inputs, connect, report, command_timeout, limit)


def run_preflight(r: Runner, show: bool = True, upgrading: bool = False) -> list[Finding]:
    try:
        findings = r.preflight(upgrading)
    except DeployFailed as exc:
        raise Exit(f"preflight: {exc}", code=1) from None
    if show:
        show_preflight(findings)
    failed = [f for f in findings if f.status == "fail"]
    if failed:
        lines = "".join(f"\n  {f.host}: {f.check}: {f.detail}" for f in failed)
        raise Exit(f"preflight: {len(failed)} problem(s); nothing was changed:{lines}", code=1)
    return findings


def summary(results: list[PhaseResult], cluster: Cluster) -> None:
    rows = [
        (
            r.name,
            host,
            len(t.changed),
            t.unchanged,
            " ".join(t.started) or "-",
            " ".join(t.restarted) or "-",
            t.failed or "-",
            f"{r.seconds:.1f}",
        )
        for r in results
        for host, t in sorted(r.hosts.items())
    ]
    ui.table(
        f"deploy of {cluster.name}",
        ["phase", "host", "changed", "unchanged", "started", "restarted", "failed", "phase s"],
        rows,
    )
    for r in results:
        if r.note:
            ui.out.print(f"{r.name}: {r.note}")


@task(
    auto_shortflags=False,
    help={
        "inventory": INVENTORY_HELP,
        "only": f"run only these phases (comma-separated: {', '.join(PHASES[1:])}); preflight always runs",
        "skip": "skip these phases (comma-separated)",
        "verbose": "show every command run on the hosts",
        "command_timeout": "seconds before a command on a host counts as failed (default 300)",
        "dry_run": "show what would change and change nothing: the same as `kubefab plan`",
        "limit": LIMIT_HELP,
    },
)
def deploy(
    ctx: Context,
    inventory: str | None = None,
    only: str | None = None,
    skip: str | None = None,
    verbose: bool = False,
    command_timeout: int = 300,
    dry_run: bool = False,
    limit: str | None = None,
) -> None:
    """Take the inventory's hosts to a running HA cluster; a second run changes nothing."""
    if dry_run:
        plan(ctx, inventory, only, skip, limit=limit)
        return
    ready = prepared(inventory, select(only, skip), limit, only)
    cluster, prep, phases = ready.cluster, ready.prep, ready.phases

    r = runner(cluster, prep.inputs, ui.host_line, verbose, command_timeout, ready.hosts)
    started = time.monotonic()
    try:
        run_preflight(r)
        committed(prep)  # the PKI and secrets are written once the hosts are known to be this cluster's
        r.start_prefetch(phases)
        for name in phases:
            ui.out.print(f"== {name}", style="bold")
            r.phase(name)
    except DeployFailed as exc:
        summary(r.results, cluster)
        raise Exit(
            f"deploy stopped: {exc}\nfix the cause and run `kubefab deploy` again: finished work is kept and "
            "only what still differs is changed",
            code=1,
        ) from None
    finally:
        r.close()
    summary(r.results, cluster)
    changes = sum(result.changes() for result in r.results)
    ui.out.print(f"deploy finished in {time.monotonic() - started:.1f} s: {changes} change(s)")
    ui.out.print(f"admin kubeconfig: {kubeconfig_dir(cluster) / 'admin.conf'}  (server {cluster.server_url})")


CHANGES_PENDING = 3  # `plan --exit-code`: 0 and 1 keep their meaning, 2 is a usage or inventory error


@task(
    auto_shortflags=False,
    help={
        "inventory": INVENTORY_HELP,
        "only": "phases to show (comma-separated)",
        "skip": "phases to leave out",
        "exit_code": f"exit {CHANGES_PENDING} when changes are pending, 0 when there are none",
        "limit": LIMIT_HELP,
        "json": ui.JSON_HELP,
    },
)
def plan(
    ctx: Context,
    inventory: str | None = None,
    only: str | None = None,
    skip: str | None = None,
    exit_code: bool = False,
    limit: str | None = None,
    json_: bool = False,
) -> None:
    """Show, per host, what deploy would change (unified diffs, steps, services); change nothing anywhere."""
    ready = prepared(inventory, select(only, skip), limit, only)
    cluster, prep, phases = ready.cluster, ready.prep, ready.phases
    r = runner(cluster, prep.inputs, limit=ready.hosts)
    changes: list[dict[str, str]] = []

    def change(where: str, phase: str | None, text: str) -> None:
        changes.append({"host": where, "phase": phase or "", "change": text})
        if not json_:
            ui.out.print(f"{where} {phase}: {text}" if phase else f"{where} {text}")

    try:
        findings = run_preflight(r, show=not json_)
        for row in prep.pki.rows:
            if row.action != "kept":
                change("local", None, f"{row.file}: {row.action}")
        if prep.secrets.write is not None:
            change("local", None, f"{secrets.FILE}: new secrets generated (not shown)")
        for name in phases:
            for host, preview in r.preview(name).items():
                for line in describe_changes(r, cluster.host(host), preview):
                    change(host, name, line)
    except (StepFailed, DeployFailed) as exc:
        raise Exit(str(exc), code=1) from None
    finally:
        r.close(record=False)
    if json_:
        ui.emit_json(
            {
                "cluster": cluster.name,
                "hosts": [h.name for h in r.hosts],
                "phases": phases,
                "preflight": findings,
                "pending": len(changes),
                "changes": changes,
            }
        )
    else:
        ui.out.print(
            f"{len(changes)} change(s) would be made" if changes else "no changes: the hosts match the inventory"
        )
    if exit_code and changes:
        raise Exit(code=CHANGES_PENDING)


def describe_changes(r: Runner, host: Host, preview: Preview) -> list[str]:
    found, lines = preview.found, []
    hidden = r.inputs.secrets.values()
    for f in found.files:
        current = r.run(host, "plan: read current file", f"cat {f.path} 2>/dev/null", check=False).stdout
        lines.append(file_diff(f"~ {f.path}", current.encode(), f.content, hidden, f.secret))
    lines += [f"~ {f.path}: mode {f.mode:04o}, owner {f.owner}:{f.group}" for f in found.perms]
    for b, current, new in found.blocks:
        lines.append(file_diff(f"~ {b.path} (block {b.marker})", current.encode(), new.encode(), hidden))
    lines += [f"+ binary {b.path} from {b.source}" for b in found.binaries]
    lines += [f"+ directory {x.path} {x.mode:04o} {x.owner}:{x.group}" for x in found.directories]
    lines += [f"+ user {u}" for u in found.users]
    lines += [f"! step: {s.name}" for s in (*found.steps, *preview.final_steps)]
    act = preview.actions
    for s in act.start:
        enabled, active = found.services.get(s, ("", ""))
        lines.append(f"> start {s} (now {enabled or 'absent'}/{active or 'absent'})")
    lines += [f"> enable {s}" for s in act.enable if s not in act.start]
    lines += [f"> restart {s}" for s in act.restart]
    return lines


@task(
    name="bundle",
    auto_shortflags=False,
    help={
        "inventory": INVENTORY_HELP,
        "arch": "amd64 or arm64 (default amd64)",
        "mirror": "base URL of an internal mirror laid out by upstream host name (e.g. http://mirror/kube serves "
        "http://mirror/kube/dl.k8s.io/...); checksums are verified the same way",
        "from-source": "build the release files from their pinned Go modules with this machine's go toolchain and "
        f"module proxy instead of downloading them (cached under ${source.CACHE_ENV}, default "
        f"{source.DEFAULT_CACHE})",
    },
)
def fetch_bundle(
    ctx: Context,
    inventory: str | None = None,
    arch: str = "amd64",
    mirror: str | None = None,
    from_source: bool = False,
) -> None:
    """Download the pinned release files for the inventory into its bundle directory, verifying checksums, or
    build them from source (--from-source)."""
    cluster = load_cluster(inventory)
    stack = stack_of(cluster)
    releases = components.releases(cluster, stack, arch)
    if from_source:
        start = time.monotonic()
        cni = f"{cluster.cni}_manifest"
        if "cni" in cluster.addons and source.buildable(cni):
            releases.append(cni_release(cluster.cni, stack))
        try:
            built = source.fill_bundle(cluster.bundle_dir, releases, source.cache_dir(), log=ui.out.print)
            refs = [r for r in bundle.required_images(cluster, stack) if images.buildable(r)]
            built += images.fill_images(
                cluster.bundle_dir, refs, arch, source.cache_dir(), stack.kubernetes, log=ui.out.print
            )
        except source.BuildError as exc:
            raise Exit(f"bundle --from-source: {exc}", code=1) from None
        ui.table(
            f"bundle in {cluster.bundle_dir} ({time.monotonic() - start:.0f} s)",
            ["component", "version", "built", "sha256"],
            [(b.component, b.version, "cached" if b.cached else f"{b.seconds:.0f} s", b.sha256[:16]) for b in built],
        )
        if "cni" in cluster.addons and not source.buildable(cni):
            ui.out.print(
                f"note: the {cluster.cni} manifest and images are not built from source; `kubefab bundle` fetches them"
            )
        return
    try:
        problems = bundle.download(cluster, releases, stack, arch, log=ui.out.print, mirror=mirror)
    except AddonError as exc:
        raise Exit(str(exc), code=1) from None
    if problems:
        raise Exit("\n".join(problems), code=1)
    ui.out.print(f"bundle ready in {cluster.bundle_dir}")
