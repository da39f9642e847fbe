"""keepalived on the lab bridge: a VIP held by the VRRP master moves to the backup when it stops."""

from __future__ import annotations

import shlex
import time
from ipaddress import IPv4Network

import pytest
from labkit import TIMINGS, Lab

pytestmark = pytest.mark.lab

# Apart from the lab inventory's VIP (.100) and router id, so a deployed cluster is never disturbed.
VIP_OFFSET = 250
ROUTER_ID = 177


def keepalived_conf(state: str, priority: int, vip: str) -> str:
    return f"""global_defs {{
  router_id {state.lower()}
}}
vrrp_instance LABTEST {{
  state {state}
  interface host0
  virtual_router_id {ROUTER_ID}
  priority {priority}
  advert_int 1
  virtual_ipaddress {{
    {vip}/24 dev host0
  }}
}}
"""


def holds(lab: Lab, host: str, vip: str) -> bool:
    return f" {vip}/" in lab.run(host, "ip -4 -o addr show dev host0")


def wait_for_vip(lab: Lab, host: str, vip: str, timeout: float) -> float:
    start = time.monotonic()
    while not holds(lab, host, vip):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{vip} not on {host} after {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def test_vip_moves_to_backup_when_keepalived_on_master_stops(lab: Lab) -> None:
    master, backup = (h.name for h in lab.state.hosts[:2])
    vip = str(IPv4Network(lab.state.subnet).network_address + VIP_OFFSET)
    try:
        for host, state, priority in ((master, "MASTER", 150), (backup, "BACKUP", 100)):
            conf = shlex.quote(keepalived_conf(state, priority, vip))
            lab.run(
                host,
                f"printf '%s' {conf} | sudo tee /etc/keepalived/keepalived.conf >/dev/null "
                "&& sudo systemctl start keepalived",
            )
        wait_for_vip(lab, master, vip, timeout=15)
        assert not holds(lab, backup, vip)

        start = time.monotonic()
        lab.run(master, "sudo systemctl stop keepalived")
        wait_for_vip(lab, backup, vip, timeout=15)
        TIMINGS["VRRP failover after keepalived stop"] = seconds = time.monotonic() - start
        print(f"VIP {vip} moved {master} -> {backup} in {seconds:.2f} s")
        assert not holds(lab, master, vip)
        assert lab.run(master, f"ping -c 1 -W 2 {vip} >/dev/null && echo answered") == "answered"
    finally:
        for host in (master, backup):
            lab.run(host, "sudo systemctl stop keepalived; sudo rm -f /etc/keepalived/keepalived.conf")
