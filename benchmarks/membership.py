"""Adding a worker on the local lab: `lab.add` of one host beside a deployed 3-host and 6-host cluster, then
the deploy that joins it (preflight to the end, every phase), with the changes it made on the hosts already there
and on the new one. The two deploys should take about the same time: a new worker is the only host with real
work. The bundle must exist (`kubefab lab.bundle`). Needs root, like the lab.

    python benchmarks/membership.py [--hosts 3,6]
"""

from __future__ import annotations

import argparse
import time

from deploy import deploy_once

from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.settings import lab_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="3,6")
    args = parser.parse_args()
    paths = lab_paths()
    rows = []
    try:
        for count in (int(n) for n in args.hosts.split(",")):
            lifecycle.up(count, paths=paths, log=lambda _: None)
            deploy_once(paths.inventory)
            start = time.monotonic()
            lifecycle.add(1, paths=paths, log=lambda _: None)
            added = time.monotonic() - start
            seconds, _, _, _, by_host = deploy_once(paths.inventory)
            new = f"lab-{count + 1}"
            others = sum(n for host, n in by_host.items() if host != new)
            rows.append((count, added, seconds, by_host.get(new, 0), others))
            print(f"{count} hosts + 1 worker: lab.add {added:.1f} s, deploy {seconds:.1f} s", flush=True)
    finally:
        lifecycle.down(paths, log=lambda _: None)
    print()
    print("cluster hosts  lab.add s  deploy adding a worker s  changes on it  changes on the others")
    for count, added, seconds, on_new, on_others in rows:
        print(f"{count:13}  {added:9.1f}  {seconds:24.1f}  {on_new:13}  {on_others:21}")


if __name__ == "__main__":
    main()
