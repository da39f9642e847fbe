"""Phase `etcd`: the member's binaries, its environment file and unit, a data dir only etcd can read."""

from __future__ import annotations

from playbooks.model import Host
from playbooks.plan import Directory, File, Plan
from playbooks.plans import binaries
from playbooks.plans.inputs import Inputs
from playbooks.render import render

DATA_DIR = "/var/lib/etcd"


def plan(inputs: Inputs, host: Host) -> Plan | None:
    if not host.has("etcd"):
        return None
    ctx = inputs.context(host, etcd_data_dir=DATA_DIR)
    return Plan(
        host.name,
        "etcd",
        users=("etcd",),
        directories=(Directory("/etc/etcd"), Directory(DATA_DIR, 0o700, "etcd", "etcd")),
        binaries=binaries.for_etcd(inputs.stack, inputs.arch),
        files=(
            File("/etc/etcd/etcd.conf", render("etcd/etcd.conf.j2", **ctx), notifies=("etcd",)),
            File("/etc/systemd/system/etcd.service", render("etcd/etcd.service.j2", **ctx), notifies=("etcd",)),
        ),
        services=("etcd",),
    )
