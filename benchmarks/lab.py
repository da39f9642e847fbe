"""Lab benchmark: `lab.up` with 3, 6 and 12 hosts (base image and bundle cached), `lab.down`, and the
memory of an idle host (PSS of all its processes, nspawn included). Run as root: python benchmarks/lab.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from pathlib import Path

from kubefab.playbooks import source
from kubefab.playbooks.lab import cgroups, lifecycle
from kubefab.playbooks.lab.bundle import ensure_bundle
from kubefab.playbooks.lab.image import ensure_image
from kubefab.playbooks.lab.settings import lab_paths

SETTLE_SECONDS = 10.0  # let boot-time jobs finish so the host is idle when measured


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split between the processes sharing them."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # exited meanwhile
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")), 0)


def host_pss_mib(name: str) -> float:
    pids: set[int] = set()
    for group in cgroups.host_groups(name):
        pids |= cgroups.pids(group)
    return sum(pss_kib(p) for p in pids) / 1024


def mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 6, 12])
    args = parser.parse_args()
    paths = lab_paths()
    lifecycle.down(paths, log=lambda _: None)
    ensure_image(paths)
    ensure_bundle(paths.bundle, source.cache_dir())

    rows = []
    for count in args.hosts:
        start = time.monotonic()
        state = lifecycle.up(count, paths=paths, log=lambda _: None)
        up_s = time.monotonic() - start
        time.sleep(SETTLE_SECONDS)
        per_host = [host_pss_mib(h.name) for h in state.hosts]
        start = time.monotonic()
        lifecycle.down(paths, log=lambda _: None)
        rows.append((count, up_s, time.monotonic() - start, mean(per_host), sum(per_host)))

    print(f"{'hosts':>5} {'lab.up s':>9} {'lab.down s':>10} {'PSS/idle host MiB':>18} {'PSS total MiB':>14}")
    for count, up_s, down_s, pss, total in rows:
        print(f"{count:>5} {up_s:>9.2f} {down_s:>10.2f} {pss:>18.1f} {total:>14.1f}")


if __name__ == "__main__":
    main()
