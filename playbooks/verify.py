"""`fab verify`: the testinfra suite in playbooks/hostsuite (shipped in the package) run against an
inventory's hosts, over the same SSH settings a deploy uses (an OpenSSH config written for the run)."""

from __future__ import annotations

from pathlib import Path

from kubefab.playbooks.model import Cluster

SUITE = Path(__file__).resolve().parent / "hostsuite"


def ssh_config(c: Cluster, control_dir: Path) -> str:
    """One Host block per inventory host; strict host key checking when the inventory names known_hosts."""
    blocks = []
    for h in c.hosts:
        ssh = c.ssh_for(h)
        lines = [
            f"Host {h.address}",
            f"  User {ssh.user}",
            f"  Port {ssh.port}",
            "  BatchMode yes",
            f"  ControlPath {control_dir}/%C",
        ]
        if ssh.key:
            lines += [f"  IdentityFile {c.path(ssh.key)}", "  IdentitiesOnly yes"]
        if ssh.known_hosts:
            lines += [f"  UserKnownHostsFile {c.path(ssh.known_hosts)}", "  StrictHostKeyChecking yes"]
        else:
            lines += ["  StrictHostKeyChecking accept-new"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def pytest_args(c: Cluster, config: Path, inventory: Path, extra: list[str]) -> list[str]:
    hosts = ",".join(f"ssh://{h.address}" for h in c.hosts)
    sudo = ["--sudo"] if any(c.ssh_for(h).sudo for h in c.hosts) else []
    return [
        str(SUITE),
        f"--hosts={hosts}",
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
