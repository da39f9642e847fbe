"""Reaching lab hosts over SSH as the operator would: the sudo user, the lab key, pinned host keys."""

from __future__ import annotations

from fabric import Config, Connection
from paramiko import RejectPolicy

from kubefab.playbooks.lab.image import USER
from kubefab.playbooks.lab.settings import LabPaths
from kubefab.playbooks.lab.state import LabHost


def connect(paths: LabPaths, host: LabHost, config: Config | None = None) -> Connection:
    """A Fabric connection that trusts only the host key the lab generated for this host."""
    conn = Connection(
        host.ip,
        user=USER,
        port=22,
        config=config,
        connect_timeout=10,
        connect_kwargs={"key_filename": str(paths.key), "look_for_keys": False, "allow_agent": False},
    )
    conn.client.load_host_keys(str(paths.known_hosts))
    conn.client.set_missing_host_key_policy(RejectPolicy())
    return conn
