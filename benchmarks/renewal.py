"""Renewing every leaf and rotating every CA on the local lab: 3 hosts deployed, then `kubefab certs.renew --all`
and `kubefab certs.rotate-ca` (all three CAs), each while an API probe runs through the VIP (GET /readyz and a LIST
every 200 ms, a new connection each, with the credentials the cluster directory holds at that moment). Prints
each command's wall time, the rotation's steps and the probe's failures. The bundle must exist (`kubefab
lab.bundle`). Needs root, like the lab.

    python benchmarks/renewal.py
"""

from __future__ import annotations

import subprocess
import sys
import time

from deploy import deploy_once

from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.probe import api_probe
from kubefab.playbooks.lab.settings import lab_paths

COMMANDS = (("certs.renew", "--all"), ("certs.rotate-ca",))
TAIL_LINES = {"certs.renew": 1, "certs.rotate-ca": 10}


def main() -> None:
    paths = lab_paths()
    try:
        lifecycle.up(3, paths=paths, log=lambda _: None)
        deploy_once(paths.inventory)
        cluster = load(paths.inventory)
        for args in COMMANDS:
            command = [sys.executable, "-m", "kubefab.playbooks.cli", *args, "--inventory", str(paths.inventory)]
            with api_probe(cluster) as probe:
                start = time.monotonic()
                result = subprocess.run(command, capture_output=True, text=True)
                seconds = time.monotonic() - start
            if result.returncode != 0:
                raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}")
            tail = TAIL_LINES[args[0]]
            print("\n".join(result.stdout.splitlines()[-tail:]))  # the rotation's table of steps, or the total
            print(f"{' '.join(args)}: {seconds:.1f} s\n{probe.report()}", flush=True)
    finally:
        lifecycle.down(paths, log=lambda _: None)


if __name__ == "__main__":
    main()
