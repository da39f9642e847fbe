"""`fab lab.up|add|down|status|ssh`: the local lab of nspawn hosts. Thin: the work is in lifecycle."""

from __future__ import annotations

import os
from ipaddress import IPv4Network

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import source, ui
from kubefab.playbooks.lab import lifecycle, network
from kubefab.playbooks.lab.access import connect
from kubefab.playbooks.lab.bundle import ensure_bundle, upgrade_from_stack
from kubefab.playbooks.lab.inventory import usage
from kubefab.playbooks.lab.settings import ENV_DIR, LabPaths, lab_paths
from kubefab.playbooks.lab.state import load


def _root() -> None:
    if os.geteuid() != 0:
        raise Exit("the lab needs root (bridges, mounts, cgroups, systemd-nspawn)", code=2)


def _paths() -> LabPaths:
    try:
        return lab_paths()
    except ValueError as exc:
        raise Exit(str(exc), code=2) from None


@task(
    auto_shortflags=False,
    help={
        "hosts": f"how many hosts (1-{network.max_hosts()}; default 3)",
        "subnet": f"the lab's own /24 inside 10.0.0.0/8 (default {network.DEFAULT_SUBNET})",
        "bridge": f"bridge name (default {network.DEFAULT_BRIDGE})",
    },
)
def up(
    ctx: Context, hosts: int = 3, subnet: str = str(network.DEFAULT_SUBNET), bridge: str = network.DEFAULT_BRIDGE
) -> None:
    """Start lab hosts (replacing any left running), write the lab inventory, print how to use it."""
    _root()
    paths = _paths()
    try:
        lifecycle.up(hosts, paths=paths, subnet=IPv4Network(subnet), bridge=bridge, log=ui.out.print)
    except ValueError as exc:  # a bad --hosts/--subnet, found before anything starts
        raise Exit(f"lab.up: {exc}", code=2) from None
    except (RuntimeError, OSError) as exc:  # CommandError and TimeoutError included
        raise _start_failed("lab.up", exc, paths) from None
    ui.out.print(usage(paths.inventory))


def _start_failed(name: str, exc: Exception, paths: LabPaths) -> Exit:
    return Exit(
        f"{name} failed: {exc}\nwhat did start is listed in {paths.state}; `kubefab lab.down` removes it"
        f" (consoles: {paths.hosts}/*/console.log)",
        code=1,
    )


@task(auto_shortflags=False, help={"hosts": "how many hosts to add (default 1)"})
def add(ctx: Context, hosts: int = 1) -> None:
    """Start more lab hosts beside the running ones and add them to the lab inventory as workers; a deploy
    then joins them to the cluster."""
    _root()
    paths = _paths()
    try:
        lifecycle.add(hosts, paths=paths, log=ui.out.print)
    except ValueError as exc:  # no lab, a bad --hosts, a changed image: found before anything starts
        raise Exit(f"lab.add: {exc}", code=2) from None
    except (RuntimeError, OSError) as exc:
        raise _start_failed("lab.add", exc, paths) from None
    ui.out.print(usage(paths.inventory))


@task
def bundle(ctx: Context) -> None:
    """Fill the lab's bundle (built from source where no verified official file is there), with the previous
    minor's Kubernetes for the upgrade test; `lab.up` fills the default minor's part too."""
    _root()
    paths = _paths()
    try:
        releases = ensure_bundle(paths.bundle, source.cache_dir(), log=ui.out.print)
        releases += ensure_bundle(paths.bundle, source.cache_dir(), upgrade_from_stack(), log=ui.out.print)
    except source.BuildError as exc:
        raise Exit(f"lab.bundle: {exc}", code=1) from None
    built = dict.fromkeys(f"{r.component} {r.version}" for r in releases)
    ui.out.print(f"lab bundle ready in {paths.bundle}: " + ", ".join(built))


@task
def down(ctx: Context) -> None:
    """Stop every lab host; leave no process, mount, cgroup, bridge or veth behind."""
    _root()
    lifecycle.down(_paths(), log=ui.out.print)


@task
def status(ctx: Context) -> None:
    """The lab's hosts: address, nspawn PID, running, sshd answering."""
    paths = _paths()
    rows = lifecycle.status(paths)
    if not rows:
        ui.out.print(f"no lab running (state in {paths.root}; set {ENV_DIR} to use another)")
        return
    ui.table(
        f"lab in {paths.root}",
        ["host", "ip", "pid", "running", "ssh"],
        [[r.name, r.ip, r.pid, "yes" if r.running else "NO", "yes" if r.ssh else "NO"] for r in rows],
    )


# Not `fab lab.ssh NAME -- CMD`: fab takes what follows `--` as a command for `-H` hosts itself.
@task(positional=["name"], help={"name": "lab host, e.g. lab-1", "command": "run this instead of an interactive shell"})
def ssh(ctx: Context, name: str, command: str = "") -> None:
    """Log into a lab host as the kubefab sudo user with the lab key, or run --command there."""
    paths = _paths()
    state = load(paths.state)
    if state is None:
        raise Exit("no lab running: kubefab lab.up first", code=2)
    try:
        host = state.host(name)
    except KeyError as exc:
        raise Exit(str(exc.args[0]), code=2) from None
    with connect(paths, host, ctx.config) as conn:
        result = conn.run(command, warn=True, pty=False) if command else conn.shell()
    if result.exited:
        raise Exit(code=result.exited)


lab = Collection("lab", up, add, down, status, ssh, bundle)
