"""`kubefab reset` on the running lab cluster (the upgraded one when the whole suite runs, with its pods): without
--yes nothing changes; --yes keeps etcd's data, --delete-data then removes only that; a second reset changes
nothing; a new deploy on the reset hosts succeeds; and reset hosts hold what fresh lab hosts hold: the same
files, runtime files, units and their states, interfaces, routes, packet-filter rules, users, groups, /etc/hosts
and /etc/fstab (the listing below, compared line by line)."""

from __future__ import annotations

import shlex

import pytest
from labkit import TIMINGS, Lab, cli

from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab.bundle import lab_stack
from kubefab.playbooks.lab.inventory import set_versions

pytestmark = pytest.mark.lab

# What a host holds, one line per thing. Left out: kernel and device trees, the journal, package-manager caches
# and scratch space, none of which kubefab writes.
LISTING = r"""
{
find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /var/log/journal -o -path /var/cache \
  -o -path /var/lib/apt -o -path /var/lib/dpkg -o -path /tmp -o -path /var/tmp \) -prune -o -print | sed 's/^/file /'
find /run -xdev | sed 's/^/run /'
systemctl list-units --all --plain --no-legend --no-pager | awk '{print "unit " $1 " " $3 " " $4}'
systemctl list-unit-files --no-legend --no-pager | awk '{print "unit-file " $1 " " $2}'
ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print "link " $2}'
ip route show | sed 's/^/route /'
ip -6 route show | sed 's/^/route6 /'
for t in iptables ip6tables; do $t-save 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//; s/^/rule /'; done
nft list ruleset 2>/dev/null | sed 's/^/nft /'
getent passwd | cut -d: -f1 | sed 's/^/user /'
getent group | cut -d: -f1 | sed 's/^/group /'
sed 's/^/hosts /' /etc/hosts
sed 's/^/fstab /' /etc/fstab
} | sort -u
"""

# Differences that are not kubefab's, each with why. The lab image has haproxy and keepalived installed already.
NOT_KUBEFABS = (
    "file /var/lib/haproxy/dev/log",  # the haproxy package's unit binds /dev/log there on its first start
    "run /run/haproxy-master.sock",  # the haproxy package's unit (-S) leaves its master socket and pid file
    "run /run/haproxy.pid",
    "run /run/xtables.lock",  # made by any iptables command, reset's own included
    "run /run/agetty.reload",  # util-linux's agetty asks its gettys to reload when network addresses change
    "run /run/systemd/",  # systemd's bookkeeping of units that ran (journal streams, invocations, transients)
    "unit network-online.target ",  # reached once a unit wanted it; systemd does not stop targets
    "unit systemd-networkd-wait-online.service ",
    "unit systemd-timedated.service ",  # bus-activated by a date query; exits when idle
)


def listing(lab: Lab) -> dict[str, set[str]]:
    return {
        h.name: {
            line
            for line in lab.run(h.name, f"sudo bash -c {shlex.quote(LISTING)}").splitlines()
            if not line.startswith(NOT_KUBEFABS)
        }
        for h in lab.state.hosts
    }


def reset(lab: Lab, *flags: str) -> tuple[int, str]:
    result, seconds = cli("reset", "--inventory", str(lab.paths.inventory), *flags)
    TIMINGS.setdefault(f"reset {' '.join(flags)}, 3 hosts", seconds)  # the first of each kind
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def reset_state(lab: Lab) -> dict[str, object]:
    """The cluster reset (data kept, then deleted, then once more), its hosts listed, a deploy run on them, and
    fresh hosts listed for comparison: every step's output kept for the tests below."""
    set_versions(lab.paths.inventory, lab_stack().minor)
    done, _ = cli("deploy", "--inventory", str(lab.paths.inventory))  # a no-op after the upgrade test
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cluster = load(lab.paths.inventory)
    etcd_hosts = [h.name for h in cluster.etcd_hosts]
    out: dict[str, object] = {"dry": reset(lab)}
    out["etcd after dry run"] = {h: lab.run(h, "systemctl is-active etcd") for h in etcd_hosts}
    out["kept"] = reset(lab, "--yes")
    out["data after reset"] = {h: lab.run(h, "sudo ls /var/lib/etcd/member") for h in etcd_hosts}
    out["deleted"] = reset(lab, "--yes", "--delete-data")
    out["again"] = reset(lab, "--yes", "--delete-data")
    out["dry again"] = reset(lab)
    out["reset"] = listing(lab)
    redeploy, seconds = cli("deploy", "--inventory", str(lab.paths.inventory))
    TIMINGS["deploy on reset hosts, 3 hosts"] = seconds
    out["redeploy"] = (redeploy.returncode, redeploy.stdout[-3000:] + redeploy.stderr[-3000:])
    lab.replace_hosts()
    out["fresh"] = listing(lab)
    return out


def test_without_yes_reset_lists_what_it_would_remove_and_changes_nothing(reset_state: dict) -> None:
    code, text = reset_state["dry"]
    assert code == 2 and "give --yes" in text
    assert "would: etcd stopped and disabled" in text and "would: files and binaries removed" in text
    assert set(reset_state["etcd after dry run"].values()) == {"active"}


def test_reset_keeps_etcd_data_unless_asked_and_then_removes_only_that(reset_state: dict) -> None:
    code, text = reset_state["kept"]
    assert code == 0 and "etcd data kept" in text, text
    assert "etcd stopped and disabled" in text and "pods removed" in text
    assert all("snap" in v and "wal" in v for v in reset_state["data after reset"].values())
    code, text = reset_state["deleted"]
    assert code == 0, text
    done = sorted({line.split(None, 1)[1] for line in text.splitlines() if line.startswith("  lab-")})
    assert done == ["etcd data removed", "user etcd removed"], text


def test_a_second_reset_changes_nothing(reset_state: dict) -> None:
    code, text = reset_state["again"]
    assert code == 0 and "0 change(s)" in text and "  lab-" not in text, text
    code, text = reset_state["dry again"]
    assert code == 0 and "nothing to remove on 3 host(s)" in text, text


def test_reset_hosts_hold_what_fresh_hosts_hold(reset_state: dict) -> None:
    fresh, after = reset_state["fresh"], reset_state["reset"]
    for host in fresh:
        assert len(fresh[host]) > 1000  # the listing ran
        left, missing = sorted(after[host] - fresh[host]), sorted(fresh[host] - after[host])
        assert not left and not missing, f"{host}: left by reset {left[:40]}; missing after it {missing[:40]}"


def test_a_new_deploy_on_reset_hosts_succeeds(reset_state: dict) -> None:
    code, text = reset_state["redeploy"]
    assert code == 0, text
