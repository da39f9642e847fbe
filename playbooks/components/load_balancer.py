"""HAProxy (TCP) in front of every apiserver and keepalived holding the VIP on the lb hosts."""

from __future__ import annotations

from kubefab.playbooks.component import Component, Port
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Check, File, Plan
from kubefab.playbooks.render import render

HEALTHCHECK_PEM = "/etc/haproxy/kubefab-healthcheck.pem"
ADMIN_SOCKET_DIR = "haproxy-kubefab"  # under /run, made by systemd for haproxy.service
ADMIN_SOCKET = f"/run/{ADMIN_SOCKET_DIR}/admin.sock"
BACKEND = "kube-apiserver"


def set_server(server: str, state: str) -> str:
    """The command (run as root on an lb host) that puts `server` of the apiserver backend in `state` (drain:
    no new connections; ready: back in rotation) through HAProxy's runtime API."""
    return f"echo 'set server {BACKEND}/{server} state {state}' | socat stdio unix-connect:{ADMIN_SOCKET}"


HANDOFF_HOLD = 1  # seconds an lb host giving the VIP up holds new connections back first


def vip_release(c: Cluster) -> str:
    """The command (run as root on the lb host giving the VIP up) that stops keepalived so that another lb host
    takes the VIP, without cutting requests: HAProxy's connections do not move with the VIP, so for a moment
    first new connections to the VIP are held back (their SYN dropped: a client sends it again a second later,
    by then to the new holder) while the requests under way on this host finish. The rule goes with the shell,
    however it ends; without iptables the VIP is given up at once."""
    rule = f"INPUT -d {c.api.vip} -p tcp --dport {c.api.port} --syn -m comment --comment kubefab-vip-handoff -j DROP"
    return (
        f"if iptables -I {rule} 2>/dev/null; then trap 'iptables -D {rule}' EXIT; trap 'exit 1' HUP INT TERM; "
        f"sleep {HANDOFF_HOLD}; fi; systemctl disable --now -q keepalived || true"
    )


def priorities(lb_hosts: tuple[Host, ...]) -> dict[str, int]:
    """The first lb host in the inventory is the MASTER (highest priority); the others follow, 10 apart."""
    return {h.name: 150 - 10 * i for i, h in enumerate(lb_hosts)}


def lb_hosts(c: Cluster) -> tuple[Host, ...]:
    """The lb hosts, when there is a VIP for them to hold."""
    return c.lb_hosts if c.api.vip is not None else ()


def context(inputs: Inputs, host: Host) -> dict[str, object]:
    c = inputs.cluster
    prio = priorities(c.lb_hosts)
    vip_prefix = host.ip.network.prefixlen if host.ip.network.prefixlen != 32 else c.network.host_prefix
    return inputs.context(
        host,
        healthcheck_pem=HEALTHCHECK_PEM,
        admin_socket=ADMIN_SOCKET,
        priority=prio[host.name],
        max_priority=max(prio.values()),
        interface=c.interface_of(host),
        vip_prefix=vip_prefix,
    )


def haproxy_plan(inputs: Inputs, host: Host) -> Plan:
    ctx = context(inputs, host)
    return Plan(
        host.name,
        "haproxy",
        files=(
            File(
                "/etc/haproxy/haproxy.cfg",
                render("haproxy/haproxy.cfg.j2", **ctx),
                notifies=("haproxy",),
                secret=True,
            ),
            File(
                "/etc/systemd/system/haproxy.service.d/kubefab.conf",
                render("haproxy/kubefab.conf.j2", admin_socket_dir=ADMIN_SOCKET_DIR),
                notifies=("haproxy",),
            ),
        ),
    )


def keepalived_plan(inputs: Inputs, host: Host) -> Plan:
    ctx = context(inputs, host)
    return Plan(
        host.name,
        "keepalived",
        files=(
            File(
                "/etc/keepalived/check_haproxy.sh",
                render("keepalived/check_haproxy.sh.j2", **ctx),
                0o700,
                notifies=("keepalived",),
            ),
            File(
                "/etc/keepalived/keepalived.conf",
                render("keepalived/keepalived.conf.j2", **ctx),
                notifies=("keepalived",),
                secret=True,
            ),
        ),
    )


def vip_checks(c: Cluster, host: Host) -> tuple[Check, ...]:
    vip, port = c.api.vip, c.api.port
    holds = Check(
        "lb check: exactly one host holds the VIP",
        f"ip -o -4 addr show | grep -qF ' {vip}/'",
        30,
        0.5,
        scope="exactly-one",
    )
    return holds, Check(
        f"lb check: HAProxy accepts on {vip}:{port}", f"timeout 3 bash -c '</dev/tcp/{vip}/{port}'", 30, scope="once"
    )


HAPROXY = Component(
    "haproxy",
    phase="lb",
    hosts=lb_hosts,
    plan=haproxy_plan,
    services=("haproxy",),
    ports=lambda c: (Port(c.api.port), Port(c.api.stats.port, bind=(str(c.api.stats.bind),), public=False)),
    packages=lambda c: ("haproxy", "socat"),  # socat: the runtime API
    reads=(HEALTHCHECK_PEM,),
    reload=True,  # a new backend must not cut the connections through the VIP
)

KEEPALIVED = Component(
    "keepalived",
    phase="lb",
    hosts=lb_hosts,
    plan=keepalived_plan,
    services=("keepalived",),
    packages=lambda c: ("keepalived", "iptables"),  # iptables: the VIP handed off without cutting requests
    rich_rules=lambda c: ('rule protocol value="vrrp" accept',),  # VRRP between the peers
    checks=vip_checks,
    # A new peer list or priority (an lb host added or removed) is read on SIGHUP: a restart would give the VIP
    # up, and with no other lb host running nothing would hold it until keepalived is back.
    reload=True,
)
