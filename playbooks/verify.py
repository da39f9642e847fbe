"""`fab verify`: the testinfra suite in playbooks/hostsuite (shipped in the package) run against an
inventory's hosts, over the same SSH settings a deploy uses (an OpenSSH config written for the run)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kubefab.playbooks.model import Cluster, Host

SUITE = Path(__file__).resolve().parent / "hostsuite"


def ssh_config(c: Cluster, control_dir: Path) -> str:
    """One Host block per inventory host, by name (HostName: where SSH connects), and one per bastion; strict
    host key checking when the inventory names known_hosts."""
    blocks: list[list[str]] = []
    bastions: dict[tuple, str] = {}
    for h in c.hosts:
        ssh = c.ssh_for(h)
        lines = [f"Host {h.name}", f"  HostName {c.ssh_address(h)}", *_login(c, ssh.user, ssh.port, ssh.key)]
        if ssh.bastion is not None:
            b = ssh.bastion
            login = (b.host, b.user or ssh.user, b.port, b.key, ssh.known_hosts)
            jump = bastions.setdefault(login, f"kubefab-bastion-{len(bastions) + 1}")
            lines.append(f"  ProxyJump {jump}")
        blocks.append([*lines, *_checking(c, ssh.known_hosts, control_dir)])
    for (address, user, port, key, known), jump in bastions.items():
        blocks.append(
            [f"Host {jump}", f"  HostName {address}", *_login(c, user, port, key), *_checking(c, known, control_dir)]
        )
    return "\n\n".join("\n".join(b) for b in blocks) + "\n"


def _login(c: Cluster, user: str, port: int, key: str | None) -> list[str]:
    lines = [f"  User {user}", f"  Port {port}", "  BatchMode yes"]
    return lines + ([f"  IdentityFile {c.path(key)}", "  IdentitiesOnly yes"] if key else [])


def _checking(c: Cluster, known_hosts: str | None, control_dir: Path) -> list[str]:
    lines = [f"  ControlPath {control_dir}/%C"]
    if known_hosts:
        return [*lines, f"  UserKnownHostsFile {c.path(known_hosts)}", "  StrictHostKeyChecking yes"]
    return [*lines, "  StrictHostKeyChecking accept-new"]


def pytest_args(
    c: Cluster, config: Path, inventory: Path, extra: list[str], hosts: Sequence[Host] | None = None
) -> list[str]:
    chosen = c.hosts if hosts is None else hosts
    sudo = ["--sudo"] if any(c.ssh_for(h).sudo for h in chosen) else []
    return [
        str(SUITE),
        "--hosts=" + ",".join(f"ssh://{h.name}" for h in chosen),
        f"--ssh-config={config}",
        *sudo,
        f"--inventory={inventory}",
        "-p",
        "no:cacheprovider",
        # The suite's modules by file, not by a name found from sys.path: its package is kubefab.playbooks.
        "--import-mode=importlib",
        "-q",
        *extra,
    ]
