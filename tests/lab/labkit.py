"""What the lab tests share: the running lab with one SSH connection per host, and measured timings."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fabric import Connection

from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.access import connect
from kubefab.playbooks.lab.settings import LabPaths
from kubefab.playbooks.lab.state import LabState
from kubefab.playbooks.model import Cluster

Kubectl = Callable[..., subprocess.CompletedProcess]

# Every long-running service a deploy may start, whose start times show what a run restarted.
SERVICES = (
    "etcd",
    "haproxy",
    "keepalived",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
)
# Seconds measured during the run, printed in pytest's summary (and so in CI's log).
TIMINGS: dict[str, float] = {}
# Other figures measured during the run (counts), printed with them.
FIGURES: dict[str, str] = {}


@dataclass
class Lab:
    paths: LabPaths
    state: LabState
    connections: dict[str, Connection]

    def run(self, host: str, command: str) -> str:
        """stdout of `command` on `host` as the kubefab user; raises if it fails."""
        return self.connections[host].run(command, hide=True, in_stream=False).stdout.strip()

    def replace_hosts(self) -> None:
        """Fresh lab hosts in place of the running ones (same names and addresses), connected."""
        for conn in self.connections.values():
            conn.close()
        self.connections.clear()
        self.state = lifecycle.up(len(self.state.hosts), paths=self.paths)
        self.connections.update((h.name, connect(self.paths, h)) for h in self.state.hosts)


def ready_nodes(kubectl: Kubectl) -> set[str]:
    """The names of the Nodes whose Ready condition is True."""
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {
        n["metadata"]["name"]
        for n in nodes
        for c in n["status"]["conditions"]
        if c["type"] == "Ready" and c["status"] == "True"
    }


def start_times(lab: Lab, cluster: Cluster) -> dict[str, str]:
    """host/service -> when the service last entered active (systemd's monotonic clock): equal before and
    after a run when it restarted nothing."""
    out = {}
    for h in cluster.hosts:
        text = lab.run(h.name, "systemctl show -p Id -p ActiveEnterTimestampMonotonic " + " ".join(SERVICES))
        for block in text.split("\n\n"):
            fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            out[f"{h.name}/{fields['Id']}"] = fields["ActiveEnterTimestampMonotonic"]
    return out


def leader_pid(nspawn_pid: int) -> int:
    """PID (on this machine) of the host's own systemd: the nspawn process's child."""
    children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
    return int(children[0])


def set_link(lab: Lab, name: str, up: bool) -> None:
    """Cut or restore a host's network from the machine (over SSH the session itself would hang)."""
    pid = lab.state.host(name).pid
    assert pid is not None
    subprocess.run(
        ["nsenter", "-t", str(leader_pid(pid)), "-n", "ip", "link", "set", "host0", "up" if up else "down"], check=True
    )
    if up:  # back only once the host answers on its address again
        address = lab.state.host(name).ip
        deadline = time.monotonic() + 30
        while not _answers(address, 22):
            assert time.monotonic() < deadline, f"{name} ({address}) unreachable 30 s after its link came back"
            time.sleep(0.1)


def _answers(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def cli(*args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
    """Run a kubefab task as an operator would (`kubefab deploy ...`); returns the result and seconds."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "kubefab.playbooks.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )
    return result, time.monotonic() - start


class Etcd:
    """etcd's v3 JSON gateway over mutual TLS from this machine, with the cluster's health-check client."""

    def __init__(self, pki: Path, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.tls = ssl.create_default_context(cafile=str(pki / "etcd" / "ca.crt"))
        self.tls.load_cert_chain(pki / "etcd" / "healthcheck-client.crt", pki / "etcd" / "healthcheck-client.key")

    def _post(self, endpoint: str, path: str, body: dict) -> dict:
        host, port = endpoint.removeprefix("https://").split(":")
        conn = http.client.HTTPSConnection(host, int(port), context=self.tls, timeout=5)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = json.loads(response.read() or b"{}")
            if response.status != 200:
                raise OSError(f"{endpoint}{path}: {response.status} {data}")
            return data
        finally:
            conn.close()

    def put(self, key: str, value: str, endpoint: str | None = None) -> None:
        self._post(endpoint or self.endpoints[0], "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def raw(self, key: str, endpoint: str | None = None) -> bytes | None:
        """The value as etcd stores it (what an attacker with etcd's files or a client certificate reads)."""
        kvs = self._post(endpoint or self.endpoints[0], "/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return base64.b64decode(kvs[0]["value"]) if kvs else None

    def get(self, key: str, endpoint: str | None = None) -> str | None:
        value = self.raw(key, endpoint)
        return value.decode() if value is not None else None

    def prefix(self, prefix: str, endpoint: str | None = None) -> dict[str, str]:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        kvs = self._post(
            endpoint or self.endpoints[0], "/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(end)}
        ).get("kvs", [])
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode() for kv in kvs}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
