"""Deploy time on the local lab with the real Kubernetes binaries: from bare lab hosts to every node Ready and
CoreDNS answering a lookup (the add-ons phase's end check), first deploy and no-op re-run on 3, 6 and 12
hosts, the time per phase, and the ratio of the 12-host to the 3-host first deploy. The bundle (binaries and
images) must exist (`kubefab lab.bundle`). Needs root, like the lab.

    python benchmarks/deploy.py [--hosts 3,6,12]
"""

from __future__ import annotations

import argparse
import resource
import time

from kubefab.playbooks.clusterdir import ensure_inputs
from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab import lifecycle
from kubefab.playbooks.lab.settings import lab_paths
from kubefab.playbooks.runner import PHASES
from kubefab.playbooks.tasks.deploy import runner

RUN_PHASES = [p for p in PHASES if p != "preflight"]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def deploy_once(inventory) -> tuple[float, dict[str, float], int, float, dict[str, int]]:
    """Wall seconds, seconds per phase, changes made, this process's CPU seconds (the operator's share: on the
    lab the hosts' own work runs on the same cores, on real hosts it runs on theirs), and changes per host."""
    cluster = load(inventory)
    start, cpu = time.monotonic(), cpu_seconds()
    d = runner(cluster, ensure_inputs(cluster))
    try:
        failed = [f for f in d.preflight() if f.status == "fail"]
        assert not failed, failed
        phases = {"preflight": time.monotonic() - start}
        d.start_prefetch(RUN_PHASES)
        for name in RUN_PHASES:
            phases[name] = d.phase(name).seconds
    finally:
        d.close()
    by_host: dict[str, int] = {}
    for result in d.results:
        for host, tally in result.hosts.items():
            by_host[host] = by_host.get(host, 0) + len(tally.changed)
    return time.monotonic() - start, phases, sum(r.changes() for r in d.results), cpu_seconds() - cpu, by_host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="3,6,12")
    args = parser.parse_args()
    paths = lab_paths()
    rows = []
    try:
        for count in (int(n) for n in args.hosts.split(",")):
            lifecycle.up(count, paths=paths, log=lambda _: None)
            first, phases, changes, cpu, _ = deploy_once(paths.inventory)
            again, _, no_changes, _, _ = deploy_once(paths.inventory)
            assert no_changes == 0, f"re-run on {count} hosts made {no_changes} change(s)"
            rows.append((count, first, again, phases, cpu))
            print(
                f"{count} hosts: first deploy {first:.1f} s ({changes} changes, operator CPU {cpu:.1f} s), "
                f"no-op re-run {again:.1f} s",
                flush=True,
            )
    finally:
        lifecycle.down(paths, log=lambda _: None)
    print()
    print("hosts  first s  re-run s  operator CPU s  " + "  ".join(f"{p:>13}" for p in ["preflight", *RUN_PHASES]))
    for count, first, again, phases, cpu in rows:
        print(f"{count:5}  {first:7.1f}  {again:8.1f}  {cpu:14.1f}  " + "  ".join(f"{phases[p]:13.1f}" for p in phases))
    by_count = {r[0]: r[1] for r in rows}
    if 3 in by_count and 12 in by_count:
        print(f"\n12-host / 3-host first deploy: {by_count[12] / by_count[3]:.2f}x")


if __name__ == "__main__":
    main()
