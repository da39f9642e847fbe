"""`kubefab certs.renew`, carried out: the reissued certificates delivered to every host, then the services that
read them restarted so that the API through the VIP keeps answering: etcd members one at a time (their phase's
rolling restart), HAProxy reloaded (not restarted) one lb host at a time, each control-plane host's services
with its apiserver out of HAProxy rotation (playbooks.upgrader's helpers), then the nodes and the add-ons."""

from __future__ import annotations

from kubefab.playbooks.runner import PHASES, Runner
from kubefab.playbooks.upgrader import Upgrader

LB_SERVICE = "haproxy"


def roll_out(r: Runner, u: Upgrader) -> None:
    c = r.cluster
    r.phase("certificates")  # files only: what reads them is owed a restart
    r.phase("etcd")
    for lb in c.lb_hosts:  # a reload re-reads its certificate without closing the listening socket
        if LB_SERVICE in r.pending[lb.name]:
            r.run(lb, "certs.renew: reload haproxy", f"systemctl reload {LB_SERVICE}")
            r.settled(lb.name, [LB_SERVICE])
            u.log(lb.name, "reloaded haproxy")
    r.phase("lb")
    for host in c.control_plane:
        u.out_of_rotation(host)
        u.limited([host]).phase("control-plane")
        u.into_rotation(host)
    for name in PHASES[PHASES.index("control-plane") :]:
        r.phase(name)
