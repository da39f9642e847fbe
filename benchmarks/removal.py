"""Removing a control-plane member on the local lab: 3 hosts deployed, a 4th added as etcd member, control plane
and worker (the step of a replacement) and deployed, then `kubefab node.remove` of the first host (etcd, control
plane, worker, and the lb host holding the VIP) while an API probe runs through the VIP (GET /readyz and a LIST
every 200 ms, a new connection each). Prints the removal's wall time (its steps and the deploy of the hosts left)
and the probe's failures. The bundle must exist (`kubefab lab.bundle`). Needs root, like the lab.

    python benchmarks/removal.py
"""

from __future__ import annotations

import subprocess
import sys
import time

import yaml
from deploy import deploy_once

from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.probe import api_probe
from kubefab.playbooks.lab.settings import lab_paths


def main() -> None:
    paths = lab_paths()
    try:
        lifecycle.up(3, paths=paths, log=lambda _: None)
        deploy_once(paths.inventory)
        lifecycle.add(1, paths=paths, log=lambda _: None)
        data = yaml.safe_load(paths.inventory.read_text())
        data["hosts"][-1]["roles"] = ["etcd", "control_plane", "worker"]
        data.setdefault("etcd", {})["allow_even_members"] = True
        paths.inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        joined, *_ = deploy_once(paths.inventory)
        print(f"lab-4 joined as etcd + control plane in {joined:.1f} s", flush=True)
        cluster = load(paths.inventory)
        first = cluster.hosts[0].name
        command = [sys.executable, "-m", "kubefab.playbooks.cli", "node.remove", first, "--yes"]
        with api_probe(cluster) as probe:
            start = time.monotonic()
            result = subprocess.run([*command, "--inventory", str(paths.inventory)], capture_output=True, text=True)
            seconds = time.monotonic() - start
        if result.returncode != 0:
            raise SystemExit(f"node.remove failed:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}")
        steps = [line for line in result.stdout.splitlines() if line.startswith(("==", "deploy finished"))]
        print("\n".join(steps))
        print(f"node.remove {first} (etcd, control plane, worker, lb): {seconds:.1f} s")
        print(probe.report())
    finally:
        lifecycle.down(paths, log=lambda _: None)


if __name__ == "__main__":
    main()
