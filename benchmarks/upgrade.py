"""Upgrade time on the local lab: 3 fresh hosts deployed with the previous minor (playbooks.lab.bundle's
upgrade_from_stack), then `kubefab upgrade` to the default minor while an API probe runs through the VIP (GET
/readyz and a LIST every 200 ms, a new connection each). Prints the upgrade's own per-stage table, its wall time
and the probe's failures. The bundle must hold both versions (`kubefab lab.bundle`). Needs root, like the lab.

    python benchmarks/upgrade.py
"""

from __future__ import annotations

import subprocess
import sys
import time

from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.bundle import lab_stack, upgrade_from_minor, upgrade_from_overrides, upgrade_from_stack
from kubefab.playbooks.lab.inventory import set_versions
from kubefab.playbooks.lab.probe import api_probe
from kubefab.playbooks.lab.settings import lab_paths


def kubefab(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "kubefab.playbooks.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"kubefab {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done, time.monotonic() - start


def main() -> None:
    paths = lab_paths()
    try:
        lifecycle.up(3, paths=paths, log=lambda _: None)
        set_versions(paths.inventory, upgrade_from_minor(), upgrade_from_overrides())
        _, deployed = kubefab("deploy", "--inventory", str(paths.inventory))
        print(f"deploy {upgrade_from_stack().kubernetes} on 3 hosts: {deployed:.1f} s", flush=True)
        set_versions(paths.inventory, lab_stack().minor)
        with api_probe(load(paths.inventory)) as probe:
            done, seconds = kubefab("upgrade", "--inventory", str(paths.inventory))
        table = done.stdout[done.stdout.rindex("upgrade of ") :]
        print(table)
        print(f"{upgrade_from_stack().kubernetes} -> {lab_stack().kubernetes} on 3 hosts: {seconds:.1f} s wall")
        print(probe.report())
    finally:
        lifecycle.down(paths, log=lambda _: None)


if __name__ == "__main__":
    main()
