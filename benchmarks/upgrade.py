"""Upgrade time on the local lab: 3 fresh hosts deployed with the previous minor (playbooks.lab.bundle's
upgrade_from_stack) running the lab application (tests/lab/app: 3 replicas, a PodDisruptionBudget), then `kubefab
upgrade` to the default minor while two probes run: the API through the VIP (GET /readyz and a LIST every 200 ms,
a new connection each) and the application's Service from a lab host (every 200 ms). Prints the upgrade's own
per-stage table, its wall time and both probes' failures. The bundle must hold both versions (`kubefab
lab.bundle`); the application is built with the machine's Go. Needs root, like the lab.

    python benchmarks/upgrade.py
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fabric import Connection

from kubefab.playbooks.components.control_plane import kubectl
from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.access import connect
from kubefab.playbooks.lab.bundle import lab_stack, upgrade_from_minor, upgrade_from_overrides, upgrade_from_stack
from kubefab.playbooks.lab.inventory import set_versions
from kubefab.playbooks.lab.probe import api_probe
from kubefab.playbooks.lab.settings import LabPaths, lab_paths
from kubefab.playbooks.lab.state import LabState

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "lab"))
import labapp


def kubefab(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "kubefab.playbooks.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"kubefab {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done, time.monotonic() - start


def application(paths: LabPaths, state: LabState) -> tuple[str, Connection]:
    """The lab application running on the deployed lab (imported on every host, applied from the first); its
    Service's address and a connection to the first host, where its probe runs."""
    conns = {h.name: connect(paths, h) for h in state.hosts}
    with tempfile.TemporaryDirectory() as tmp:
        labapp.import_archive(conns, list(conns), labapp.build_archive(Path(tmp)))
    first = conns[state.hosts[0].name]
    first.put(io.StringIO(labapp.drainable_manifest("up")), "/tmp/up.yaml")
    for args in ("apply -f /tmp/up.yaml", "rollout status deployment/up --timeout=180s"):
        first.run(f"sudo {kubectl(args)}", hide=True, in_stream=False)
    service_ip = first.run(f"sudo {kubectl('get service up -o jsonpath={.spec.clusterIP}')}", hide=True)
    return service_ip.stdout.strip(), first


def main() -> None:
    paths = lab_paths()
    try:
        state = lifecycle.up(3, paths=paths, log=lambda _: None)
        set_versions(paths.inventory, upgrade_from_minor(), upgrade_from_overrides())
        _, deployed = kubefab("deploy", "--inventory", str(paths.inventory))
        print(f"deploy {upgrade_from_stack().kubernetes} on 3 hosts: {deployed:.1f} s", flush=True)
        service_ip, conn = application(paths, state)
        set_versions(paths.inventory, lab_stack().minor)
        with labapp.ServiceProbe(conn, service_ip) as app, api_probe(load(paths.inventory)) as probe:
            done, seconds = kubefab("upgrade", "--inventory", str(paths.inventory))
        table = done.stdout[done.stdout.rindex("upgrade of ") :]
        print(table)
        print(f"{upgrade_from_stack().kubernetes} -> {lab_stack().kubernetes} on 3 hosts: {seconds:.1f} s wall")
        print(probe.report())
        print(f"application probe through its Service: {len(app.failed)} failed of {len(app.lines)} requests")
        print("\n".join(f"  {line}" for line in app.failed[:20]))
    finally:
        lifecycle.down(paths, log=lambda _: None)


if __name__ == "__main__":
    main()
