"""Phase `preflight`: everything checked on every host, reported in one table before anything changes.
Pure: the inventory and each host's facts in, findings out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from kubefab.playbooks.components import required_ports
from kubefab.playbooks.facts import SUPPORTED_OS, Facts
from kubefab.playbooks.findings import Finding, Status
from kubefab.playbooks.model import Cluster, Host

MAX_SKEW = 30  # seconds; certificates and etcd leases need clocks that agree


def _joining(c: Cluster, members: list[str]) -> tuple[Status, str]:
    """A new etcd member beside `members`, which hold the running cluster: one at a time."""
    new = [h.name for h in c.etcd_hosts if h.name not in members]
    if len(new) > 1:
        return "fail", (
            f"{len(new)} new etcd members at once ({', '.join(new)}): etcd takes one learner at a time and the "
            "quorum grows with each; add them to the inventory one deploy after the other"
        )
    return "ok", (
        f"none: joins the running cluster ({', '.join(members)}) as a learner, promoted to a voting member once "
        "it has caught up; the quorum is unchanged until then"
    )


def check(
    c: Cluster,
    facts: dict[str, Facts],
    bundle_arch: str,
    now: float,
    hosts: Sequence[Host] | None = None,
) -> list[Finding]:
    """Findings for `hosts` (default: all; fewer under `--limit`, whose facts are the only ones read)."""
    hosts = c.hosts if hosts is None else hosts
    limited = len(hosts) < len(c.hosts)
    out: list[Finding] = []
    hostnames = Counter(f.hostname for f in facts.values())
    etcd_with_data = [h.name for h in c.etcd_hosts if h.name in facts and facts[h.name].etcd_member]
    for host in hosts:
        f = facts[host.name]

        def add(name: str, status: Status, detail: str, host: Host = host) -> None:
            out.append(Finding(host.name, name, status, detail))

        add("ssh + sudo", "ok", f"reached; init {f.init}")
        if f.init != "systemd":
            add("systemd", "fail", f"PID 1 is {f.init or 'unknown'}; kubefab installs systemd units")
        supported = ", ".join(f"{os} {'/'.join(v)}" for os, v in SUPPORTED_OS.items())
        add(
            "operating system",
            "ok" if f.supported else "fail",
            f.os if f.supported else f"{f.os} is not supported (supported: {supported})",
        )
        add(
            "architecture",
            "ok" if f.arch == bundle_arch else "fail",
            f.arch if f.arch == bundle_arch else f"{f.arch}, but the bundle is {bundle_arch}",
        )
        if hostnames[f.hostname] > 1:
            add("host name", "fail", f"{f.hostname!r} is also the name of another host")
        else:
            add(
                "host name",
                "ok",
                f.hostname if f.hostname == host.name else f"{f.hostname} (the node registers as {host.name})",
            )
        busy = {
            p: owner
            for p, owner in f.listening.items()
            if p in required_ports(c, host) and not owner.startswith(required_ports(c, host)[p][:15])
        }
        add(
            "ports free",
            "fail" if busy else "ok",
            ", ".join(f"{p} held by {o or 'another process'}" for p, o in sorted(busy.items()))
            if busy
            else ", ".join(str(p) for p in sorted(required_ports(c, host))),
        )
        skew = f.time - now
        if abs(skew) > MAX_SKEW:
            add("time", "fail", f"clock {skew:+.0f} s from this machine's; fix NTP before deploying")
        else:
            add(
                "time",
                "ok" if f.ntp_synchronized else "warn",
                f"skew {skew:+.0f} s; NTP "
                + {True: "synchronized", False: "NOT synchronized", None: "state unknown (no timedatectl)"}[
                    f.ntp_synchronized
                ],
            )
        if f.swap or f.fstab_swap:
            where = ", ".join([*(f"on: {s}" for s in f.swap), *(f"in fstab: {s}" for s in f.fstab_swap)])
            add("swap", "warn", f"{where}; prepare turns it off and comments it out of fstab")
        else:
            add("swap", "ok", "off")
        if f.cgroup_version == 2:
            add("cgroup", "ok", "v2 (unified)")
        elif c.cgroup_v1 == "allow":
            add("cgroup", "warn", "v1: allowed by the inventory (failCgroupV1: false); v1 is deprecated")
        else:
            add(
                "cgroup",
                "fail",
                "v1: kubefab renders failCgroupV1: true (cgroup_v1: refuse), so the kubelet would "
                "not start; move the host to cgroup v2 or set cgroup_v1: allow",
            )
        if host.has("worker") and not f.cap_sys_resource:
            add(
                "oom scores",
                "warn",
                "root lacks CAP_SYS_RESOURCE (a container?): containerd keeps pods' "
                "oom_score_adj at or above its own (restrict_oom_score_adj), so the kernel's OOM killer does not "
                "spare system pods first",
            )
        if c.firewall == "open" and f.firewalld_enabled and not f.firewalld_active:
            add(
                "firewall",
                "warn",
                "firewalld is enabled but stopped: kubefab opens ports only in a running "
                "firewalld, so the next boot would block them; start it and re-run, or set firewall: disable",
            )
        if host.has("etcd"):
            if limited and not f.etcd_member:
                add(
                    "etcd data",
                    "fail",
                    "none: this host would form or join the etcd cluster, a membership change that needs every "
                    "member; run without --limit",
                )
            elif limited:
                add("etcd data", "ok", "existing member data: kept")
            elif f.etcd_member and len(etcd_with_data) == len(c.etcd_hosts):
                add("etcd data", "ok", "existing member data: kept, the cluster is not re-initialised")
            elif etcd_with_data and not f.etcd_member:
                add("etcd data", *_joining(c, etcd_with_data))
            else:
                add(
                    "etcd data",
                    "ok",
                    "none: a new cluster will be created" if not f.etcd_member else "existing member data: kept",
                )
    return out
