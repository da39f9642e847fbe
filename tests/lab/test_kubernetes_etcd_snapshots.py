"""etcd.snapshots on the deployed lab: a deploy that asks for it gives every member a running timer (and
restarts nothing); its service takes checked snapshots, keeps the newest `keep`, each restorable; a second
deploy changes nothing; a deploy without it removes the timer and keeps the snapshots taken."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from labkit import TIMINGS, Lab, cli, start_times

from kubefab.playbooks.components.etcd import SNAPSHOT_DIR, SNAPSHOT_TIMER, SNAPSHOT_UNIT
from kubefab.playbooks.model import Cluster

pytestmark = pytest.mark.lab
KEEP = 2


def snapshot_files(lab: Lab, host: str) -> dict[str, str]:
    """name -> mode of what the snapshot directory holds."""
    listed = lab.run(host, f"sudo find {SNAPSHOT_DIR} -mindepth 1 -printf '%f %m\\n'")
    return dict(line.split() for line in listed.splitlines())


def test_the_timer_takes_checked_snapshots_keeps_the_newest_and_goes_when_unset(
    lab: Lab, cluster: Cluster, tmp_path: Path
) -> None:
    doc = yaml.safe_load(lab.paths.inventory.read_text())
    doc["etcd"] = {"snapshots": {"keep": KEEP}}
    inventory = tmp_path / "lab-snapshots.yaml"
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))

    before = start_times(lab, cluster)
    result, seconds = cli("deploy", "--inventory", str(inventory))
    TIMINGS["deploy adding etcd snapshot timers, 3 hosts"] = seconds
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert start_times(lab, cluster) == before, "adding the snapshot timer restarted a service"
    for h in cluster.etcd_hosts:
        assert lab.run(h.name, f"systemctl is-active {SNAPSHOT_TIMER}; systemctl is-enabled {SNAPSHOT_TIMER}") == (
            "active\nenabled"
        )
        assert lab.run(h.name, f"systemctl show -p NextElapseUSecRealtime --value {SNAPSHOT_TIMER}"), h.name

    host = cluster.etcd_hosts[0].name
    taken = []
    for _ in range(KEEP + 1):
        start = time.monotonic()
        lab.run(host, f"sudo systemctl start {SNAPSHOT_UNIT}.service")
        TIMINGS.setdefault("etcd snapshot by the timer's service, 1 member", time.monotonic() - start)
        taken.append(max(n for n in snapshot_files(lab, host) if n.endswith(".db")))
        time.sleep(1.1)  # names carry the second they were taken
    files = snapshot_files(lab, host)
    kept = taken[-KEEP:]
    assert files == {n: "600" for name in kept for n in (name, f"{name}.sha256")}, files
    assert lab.run(host, f"sudo stat -c %a {SNAPSHOT_DIR}") == "700"
    assert lab.run(host, f"sudo sh -c 'cd {SNAPSHOT_DIR} && sha256sum -c {kept[-1]}.sha256'").endswith(": OK")

    # One of them, brought to this machine, is a snapshot a restore takes.
    local = tmp_path / kept[-1]
    lab.run(host, f"sudo install -m 0600 -o $(id -un) {SNAPSHOT_DIR}/{kept[-1]} /tmp/{kept[-1]}")
    lab.connections[host].get(f"/tmp/{kept[-1]}", str(local))
    lab.run(host, f"rm /tmp/{kept[-1]}")
    result, _ = cli("etcd.restore", str(local), "--check", "--inventory", str(inventory))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"restores to revision \d+ with \d+ keys", result.stdout), result.stdout

    # The host suite's check passes, and catches a snapshot that no longer matches its .sha256.
    result, _ = cli("verify", "--options", "-k etcd_snapshots", "--inventory", str(inventory))
    assert result.returncode == 0 and "every check passed" in result.stdout, result.stdout[-3000:]
    lab.run(host, f"sudo truncate -s -1 {SNAPSHOT_DIR}/{kept[0]}")
    result, _ = cli("verify", "--options", "-k etcd_snapshots", "--inventory", str(inventory))
    assert result.returncode != 0 and kept[0] in result.stdout, result.stdout[-3000:]

    again, _ = cli("deploy", "--inventory", str(inventory))
    assert again.returncode == 0 and "0 change(s)" in again.stdout, again.stdout[-3000:]

    result, _ = cli("deploy", "--inventory", str(lab.paths.inventory))  # etcd.snapshots unset again
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    for h in cluster.etcd_hosts:
        units = " ".join(f"/etc/systemd/system/{SNAPSHOT_UNIT}.{kind}" for kind in ("service", "timer"))
        gone = f"systemctl is-active {SNAPSHOT_TIMER}; ls {units} 2>/dev/null; true"
        assert lab.run(h.name, gone) == "inactive", h.name
    assert snapshot_files(lab, host) == files, "the snapshots taken are kept"
