"""etcd: the member's binaries, its environment file and unit, a data dir only etcd can read; mutual TLS on the
client and peer ports."""

from __future__ import annotations

from kubefab.pki.profiles import ETCD_PKI
from kubefab.playbooks import ports
from kubefab.playbooks.component import Component, Port, with_role
from kubefab.playbooks.components import binaries
from kubefab.playbooks.inputs import REMOTE_PKI, Inputs
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Check, Directory, File, Plan, Step
from kubefab.playbooks.render import render

DATA_DIR = "/var/lib/etcd"
# Where earlier kubefab versions put the member's credentials: owned by etcd, inside root's PKI directory.
OLD_CREDENTIALS = tuple(f"{REMOTE_PKI}/etcd/{name}.{ext}" for name in ("server", "peer") for ext in ("crt", "key"))
# Removed only once every member runs from /etc/etcd/pki: etcd reads its certificate files at each TLS
# handshake, so an earlier removal would cut the members still on the old paths off from their peers.
RETIRE_OLD_CREDENTIALS = Step(
    "etcd's former credentials in /etc/kubernetes/pki/etcd removed (now in /etc/etcd/pki)",
    unless=" && ".join(f"[ ! -e {path} ]" for path in OLD_CREDENTIALS),
    run=f"rm -f {' '.join(OLD_CREDENTIALS)}",
)


# Written by the join step (etcdctl member add's own lines), read by the unit after initial-cluster.conf, removed
# once the member is promoted: a joined member's files are then those of one that was there from the start.
JOIN_ENV = "/etc/etcd/join.env"


def joining(inputs: Inputs, host: Host) -> bool:
    """Whether `host` is a new member of a running cluster: no data of its own while another member has some."""
    facts = inputs.facts
    mine = facts.get(host.name)
    return (
        mine is not None
        and not mine.etcd_member
        and any(h.name in facts and facts[h.name].etcd_member for h in inputs.cluster.etcd_hosts)
    )


def peer_url(host: Host) -> str:
    return f"https://{host.address}:{ports.ETCD_PEER}"


def join_step(c: Cluster, host: Host) -> Step:
    """`member add --learner` through the other members, before this member's first start. A learner does not
    vote, so the quorum is the same as before until it is promoted. A member an interrupted run added but that
    never started is removed and added again (its `member add` lines were lost with that run)."""
    others = ",".join(endpoint(h) for h in c.etcd_hosts if h != host)
    peer = peer_url(host)
    add = etcdctl(others, f"member add {host.name} --peer-urls={peer} --learner")
    return Step(
        f"joined the running etcd cluster as a learner (member add through {others})",
        unless=f"[ -d {DATA_DIR}/member ] || [ -e {JOIN_ENV} ]",
        run=f"stale=$({etcdctl(others, 'member list')} | grep -F ', unstarted, , {peer},' | cut -d, -f1) && "
        f'{{ [ -z "$stale" ] || {etcdctl(others, "member remove $stale")}; }} && '
        f"out=$({add}) && umask 077 && printf '%s\\n' \"$out\" | grep '^ETCD_INITIAL_CLUSTER' > {JOIN_ENV}.part "
        f"&& mv {JOIN_ENV}.part {JOIN_ENV}",
    )


def promote_step(c: Cluster, host: Host, seconds: int = 180) -> Step:
    """A learner promoted once it has caught up with the leader (etcd refuses before), then its join file gone.
    On every member: a run interrupted between the start and the promotion is finished by the next."""
    every = ",".join(endpoint(h) for h in c.etcd_hosts)
    peer = peer_url(host)
    tries = seconds // 2
    return Step(
        "learner promoted to a voting etcd member (caught up with the leader)",
        unless=f"[ ! -e {JOIN_ENV} ]",
        run=f"( for i in $(seq {tries}); do line=$({etcdctl(every, 'member list')} | grep -F ', {peer},'); "
        f'case "$line" in *", false") rm -f {JOIN_ENV}; exit 0;; esac; '
        f"{etcdctl(every, 'member promote ${line%%,*}')} >/dev/null 2>&1 || sleep 2; done; "
        f"echo 'still a learner after {seconds} s: {host.name} has not caught up with the leader' >&2; exit 1 )",
    )


def plan(inputs: Inputs, host: Host) -> Plan:
    ctx = inputs.context(host, etcd_data_dir=DATA_DIR, etcd_pki=ETCD_PKI, join_env=JOIN_ENV)
    c = inputs.cluster
    return Plan(
        host.name,
        "etcd",
        users=("etcd",),
        directories=(Directory("/etc/etcd"), Directory(DATA_DIR, 0o700, "etcd", "etcd")),
        files=(
            File("/etc/etcd/etcd.conf", render("etcd/etcd.conf.j2", **ctx), notifies=("etcd",)),
            File("/etc/etcd/initial-cluster.conf", render("etcd/initial-cluster.conf.j2", **ctx)),
            File("/etc/systemd/system/etcd.service", render("etcd/etcd.service.j2", **ctx), notifies=("etcd",)),
        ),
        steps=(join_step(c, host),) if joining(inputs, host) else (),
        final_steps=(RETIRE_OLD_CREDENTIALS, *((promote_step(c, host),) if len(c.etcd_hosts) > 1 else ())),
    )


def endpoint(host: Host) -> str:
    return f"https://{host.address}:{ports.ETCD_CLIENT}"


def etcdctl(endpoints: str, command: str) -> str:
    """etcdctl on an etcd host with the health-check client certificate."""
    return (
        f"ETCDCTL_API=3 {binaries.KUBE_BIN}/etcdctl --endpoints={endpoints} --dial-timeout=3s "
        f"--command-timeout=5s --cacert={REMOTE_PKI}/etcd/ca.crt "
        f"--cert={REMOTE_PKI}/etcd/healthcheck-client.crt --key={REMOTE_PKI}/etcd/healthcheck-client.key "
        f"{command}"
    )


def member_rows(listed: str) -> list[list[str]]:
    """`etcdctl member list` output as rows: [id, status, name, peer URLs, client URLs, is learner]."""
    return [[field.strip() for field in line.split(",")] for line in listed.splitlines() if line.strip()]


def checks(c: Cluster, host: Host) -> tuple[Check, ...]:
    member = Check("etcd member health", etcdctl(endpoint(host), "endpoint health"), 90)
    every = ",".join(endpoint(h) for h in c.etcd_hosts)
    return member, Check(
        "etcd cluster health (mutual TLS, every member)", etcdctl(every, "endpoint health"), 120, scope="once"
    )


ETCD = Component(
    "etcd",
    phase="etcd",
    hosts=with_role("etcd"),
    plan=plan,
    services=("etcd",),
    restart="rolling",
    start="no-block",  # a member's start returns once a quorum exists: every member starts without waiting
    ports=lambda c: (
        Port(ports.ETCD_CLIENT, bind=("host", "local")),
        Port(ports.ETCD_PEER, bind=("host",)),
        Port(ports.ETCD_METRICS, bind=("local",), public=False),
    ),
    releases=("etcd",),
    binaries=lambda s, arch: binaries.etcd(s.etcd, arch),
    reads=(f"{ETCD_PKI}/ca.crt", f"{ETCD_PKI}/server", f"{ETCD_PKI}/peer"),
    checks=checks,
)


# -- snapshots on a timer (the inventory's etcd.snapshots) ----------------------------------------------------
SNAPSHOT_DIR = "/var/lib/etcd-snapshots"
SNAPSHOT_UNIT = "kubefab-etcd-snapshot"
SNAPSHOT_SCRIPT = f"{binaries.KUBE_BIN}/{SNAPSHOT_UNIT}"
SNAPSHOT_TIMER = f"{SNAPSHOT_UNIT}.timer"
_SNAPSHOT_UNITS = tuple(f"/etc/systemd/system/{SNAPSHOT_UNIT}.{kind}" for kind in ("service", "timer"))
# etcd.snapshots taken out of the inventory: the timer goes, the snapshots it took stay (they are data).
RETIRE_SNAPSHOTS = Step(
    "etcd snapshot timer removed (etcd.snapshots unset; the snapshots taken are kept)",
    unless=f"[ ! -e {_SNAPSHOT_UNITS[1]} ]",
    run=f"systemctl disable --now {SNAPSHOT_TIMER}; rm -f {SNAPSHOT_SCRIPT} {' '.join(_SNAPSHOT_UNITS)} "
    "&& systemctl daemon-reload",
)


def data_dirs(c: Cluster) -> tuple[str, ...]:
    """What an etcd member holds that is the cluster's data, not kubefab's files: kept by `reset` unless asked."""
    return (DATA_DIR, SNAPSHOT_DIR) if c.etcd.snapshots else (DATA_DIR,)


def snapshot_plan(inputs: Inputs, host: Host) -> Plan:
    spec = inputs.cluster.etcd.snapshots
    if spec is None:
        return Plan(host.name, "etcd-snapshots", steps=(RETIRE_SNAPSHOTS,))
    # etcdutl checks snapshots from etcd 3.5 on; before, etcdctl did.
    tools = {b.path.rsplit("/", 1)[1] for b in binaries.etcd(inputs.stack.etcd, inputs.arch)}
    ctx = inputs.context(
        host,
        checker="etcdutl" if "etcdutl" in tools else "etcdctl",
        snapshot_dir=SNAPSHOT_DIR,
        keep=spec.keep,
        schedule=spec.schedule,
        script=SNAPSHOT_SCRIPT,
        bin=binaries.KUBE_BIN,
        endpoint=endpoint(host),
        pki=REMOTE_PKI,
    )
    service, timer = _SNAPSHOT_UNITS
    return Plan(
        host.name,
        "etcd-snapshots",
        directories=(Directory(SNAPSHOT_DIR, 0o700),),
        files=(
            File(SNAPSHOT_SCRIPT, render(f"etcd/{SNAPSHOT_UNIT}.j2", **ctx), mode=0o700),
            File(service, render(f"etcd/{SNAPSHOT_UNIT}.service.j2", **ctx)),
            File(timer, render(f"etcd/{SNAPSHOT_UNIT}.timer.j2", **ctx), notifies=(SNAPSHOT_TIMER,)),
        ),
        services=(SNAPSHOT_TIMER,),
        checks=(Check("etcd snapshot timer active", f"systemctl is-active -q {SNAPSHOT_TIMER}", 30),),
    )


ETCD_SNAPSHOTS = Component("etcd-snapshots", phase="etcd", hosts=with_role("etcd"), plan=snapshot_plan)
