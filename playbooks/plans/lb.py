"""Phase `lb`: HAProxy in front of every apiserver and keepalived holding the VIP on the lb hosts."""

from __future__ import annotations

from playbooks.model import Host
from playbooks.plan import File, Plan
from playbooks.plans.inputs import Inputs
from playbooks.render import render

HEALTHCHECK_PEM = "/etc/haproxy/kubefab-healthcheck.pem"


def priorities(lb_hosts: tuple[Host, ...]) -> dict[str, int]:
    """The first lb host in the inventory is the MASTER (highest priority); the others follow, 10 apart."""
    return {h.name: 150 - 10 * i for i, h in enumerate(lb_hosts)}


def plan(inputs: Inputs, host: Host) -> Plan | None:
    c = inputs.cluster
    if not host.has("lb") or c.api.vip is None:
        return None
    prio = priorities(c.lb_hosts)
    interface = c.interface_of(host)
    vip_prefix = host.ip.network.prefixlen if host.ip.network.prefixlen != 32 else c.network.host_prefix
    ctx = inputs.context(host, healthcheck_pem=HEALTHCHECK_PEM, priority=prio[host.name],
                         max_priority=max(prio.values()), interface=interface, vip_prefix=vip_prefix)
    return Plan(
        host.name,
        "lb",
        files=(
            File("/etc/haproxy/haproxy.cfg", render("haproxy/haproxy.cfg.j2", **ctx), 0o640,
                 notifies=("haproxy",), secret=True),
            File("/etc/systemd/system/haproxy.service.d/kubefab.conf", render("haproxy/kubefab.conf.j2"),
                 notifies=("haproxy",)),
            File("/etc/keepalived/check_haproxy.sh", render("keepalived/check_haproxy.sh.j2", **ctx), 0o755,
                 notifies=("keepalived",)),
            File("/etc/keepalived/keepalived.conf", render("keepalived/keepalived.conf.j2", **ctx), 0o600,
                 notifies=("keepalived",), secret=True),
        ),
        services=("haproxy", "keepalived"),
    )
