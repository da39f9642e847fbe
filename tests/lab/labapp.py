"""The lab's test application (tests/lab/app): built into a one-layer OCI image, a Deployment that survives
drains, and a probe of its Service from a lab host. Shared by the pods and upgrade tests and by
benchmarks/upgrade.py."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fabric import Connection

from kubefab.playbooks import oci
from kubefab.playbooks.components.images import CTR
from kubefab.playbooks.lab.bundle import machine_arch

APP_IMAGE = "docker.io/kubefab/labapp:1"
SOURCE = Path(__file__).parent / "app" / "main.go"


def build_archive(out: Path) -> Path:
    """tests/lab/app as a static binary in a one-layer OCI image (written by kubefab's own image writer)."""
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "labapp"), str(SOURCE)],
        check=True,
        cwd=out,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    image = oci.Image(
        APP_IMAGE,
        machine_arch(),
        (oci.LayerFile("/labapp", (out / "labapp").read_bytes()),),
        ("/labapp",),
        user="65532:65532",
    )
    oci.write_archive(image, out / "labapp.oci.tar")
    return out / "labapp.oci.tar"


def import_archive(connections: dict[str, Connection], hosts: list[str], archive: Path) -> None:
    """The image imported into containerd on `hosts`, as an operator without a registry would."""
    for name in hosts:
        connections[name].put(str(archive), "/tmp/labapp.oci.tar")
        connections[name].run(f"sudo {CTR} images import /tmp/labapp.oci.tar", hide=True, in_stream=False)


def drainable_manifest(name: str = "up") -> str:
    """3 replicas spread when they can be (not required: a drained node's pod moves to another), a budget of at
    most one missing, and a preStop pause so a terminating pod is out of the Service before it stops serving."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm: {{topologyKey: kubernetes.io/hostname, labelSelector: {{matchLabels: {{app: {name}}}}}}}
      containers:
        - name: app
          image: {APP_IMAGE}
          args: [serve, ":8080"]
          ports: [{{containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
          lifecycle: {{preStop: {{sleep: {{seconds: 5}}}}}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: {name}}}
spec:
  minAvailable: 2
  selector: {{matchLabels: {{app: {name}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


@dataclass
class ServiceProbe:
    """HTTP GET of http://`address`/ every 200 ms from a lab host (curl in a loop there, logged on the host), from
    `with` to its end; `lines` are the log's lines, `failed` those without a 200."""

    conn: Connection
    address: str
    lines: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [line for line in self.lines if not line.endswith(" 200")]

    def __enter__(self) -> ServiceProbe:
        self.conn.run("rm -f /tmp/app-probe.log /tmp/app-probe.stop", hide=True, in_stream=False)
        self.conn.run(
            "nohup bash -c 'while [ ! -e /tmp/app-probe.stop ]; do "
            f'c=$(curl -sS -m 2 -w " %{{http_code}}" http://{self.address}/ 2>&1 | tr -s "\\n" " "); '
            'echo "$(date +%H:%M:%S.%N) $c" >> /tmp/app-probe.log; '
            "sleep 0.2; done' >/dev/null 2>&1 &",
            hide=True,
            in_stream=False,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.run("touch /tmp/app-probe.stop", hide=True, in_stream=False)
        time.sleep(1)
        self.lines = self.conn.run("cat /tmp/app-probe.log", hide=True, in_stream=False).stdout.strip().splitlines()
