"""`kubefab reset`: a host taken back to what it was before kubefab, derived from the plans a deploy applies there
(their services, files, binaries, directories, blocks and users) plus what the running cluster left behind
(pods and their mounts, CNI interfaces, kube-proxy's and the CNI's packet-filter rules, runtime state). Each
piece is a Step whose check says "already gone", so a second reset changes nothing; OS packages are left
installed, and etcd's data stays unless asked. Pure: playbooks.tasks.reset carries the steps out."""

from __future__ import annotations

import shlex

from kubefab.playbooks.components import host_plans
from kubefab.playbooks.components.binaries import KUBE_BIN
from kubefab.playbooks.components.etcd import data_dirs
from kubefab.playbooks.components.host_os import FSTAB_MARK
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.model import Host
from kubefab.playbooks.plan import Plan, Step

# What the cluster writes at run time, outside any plan: container and CNI state, pod logs, kubefab's records.
RUNTIME_TREES = (
    "/var/lib/containerd",
    "/run/containerd",
    "/var/lib/cni",
    "/run/flannel",
    "/var/lib/calico",
    "/run/calico",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/kubefab",
    "/run/haproxy-kubefab",
    "/opt/containerd",  # containerd's plugin directories
    "/usr/libexec/kubernetes",  # the kubelet's volume plugin directory
    "/root/.kube/cache",  # kubectl's discovery cache from the add-ons' apply
    "/run/nri",  # containerd's NRI socket
    "/run/netns",  # where the CNI keeps pods' network namespaces (each one unmounted first)
)
# Mounts pods leave below these (volumes, secrets, network namespaces, container root filesystems); the roots
# themselves may be the operator's own filesystems (a disk for /var/lib/containerd) and stay mounted.
MOUNT_ROOTS = ("/var/lib/kubelet", "/run/containerd", "/var/lib/containerd", "/run/netns")
# Interfaces the CNI plugins and kube-proxy create (pods' veths go with their network namespaces).
INTERFACES = r"^(cni0|flannel\.[0-9]+|vxlan\.calico|cali[0-9a-f]+|kube-ipvs0|nodelocaldns|veth[0-9a-f]+)$"
# Chains and comments of kube-proxy, kubelet, the CNI plugins, Flannel and Calico.
RULES = r"KUBE-|CNI-|FLANNEL|cali-|cali:|kubefab-vip-handoff"  # the last: a VIP handoff left by node.remove
NFT_TABLES = r"kube-proxy|calico|flannel"
# Directories never removed, even empty.
STANDARD = frozenset(
    [
        "/",
        "/etc",
        "/etc/systemd",
        "/etc/systemd/system",
        "/opt",
        "/root",
        "/usr",
        "/usr/libexec",
        "/usr/local",
        "/usr/local/bin",
        "/usr/local/sbin",
        "/var",
        "/var/lib",
        "/var/log",
        "/run",
        "/tmp",
    ]
)
TABLE_TOOLS = ("iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy")


def _q(paths: list[str] | tuple[str, ...]) -> str:
    return " ".join(shlex.quote(p) for p in paths)


def _stopped(service: str) -> Step:
    s = shlex.quote(service)
    return Step(
        f"{service} stopped and disabled",
        unless=f"! systemctl is-active -q {s} && ! systemctl is-enabled -q {s} 2>/dev/null",
        run=f"systemctl disable --now -q {s} 2>/dev/null || systemctl stop {s}",
    )


def _pods_removed() -> Step:
    crictl = f"{KUBE_BIN}/crictl"
    # Removed through the CRI while containerd still runs, so each pod's CNI teardown (its veth, its IP) happens.
    return Step(
        "pods removed",
        unless=f'! systemctl is-active -q containerd || [ -z "$({crictl} pods -q 2>/dev/null)" ]',
        run=f"{crictl} rmp --all --force >/dev/null",
    )


def _processes_gone() -> Step:
    # containerd stops with KillMode=process: its shims (and any container they still hold) outlive it.
    return Step(
        "container processes stopped",
        # [m]: the pattern does not match the shell running it.
        unless="! pgrep -f 'containerd-shi[m]' >/dev/null && ! systemctl is-active -q kubepods.slice",
        run="systemctl stop kubepods.slice 2>/dev/null; pkill -KILL -f 'containerd-shi[m]'; sleep 1",
    )


def _unmounted() -> Step:
    roots = "|".join(r.lstrip("/").replace("/", r"\/") for r in MOUNT_ROOTS)
    listed = f"awk '$2 ~ /^\\/({roots})\\// || $2 == \"/run/netns\" {{print $2}}' /proc/mounts"
    return Step(
        f"mounts under {', '.join(MOUNT_ROOTS)} unmounted",
        unless=f'[ -z "$({listed})" ]',
        run=f"{listed} | sort -r | xargs -r -n 1 umount -l",
    )


def _interfaces() -> Step:
    listed = f"ip -o link show | awk -F': ' '{{sub(/@.*/, \"\", $2); print $2}}' | grep -E '{INTERFACES}'"
    return Step(
        "CNI and kube-proxy interfaces removed",
        unless=f"! {listed} >/dev/null",
        run=f'for i in $({listed}); do ip link delete "$i" 2>/dev/null || true; done',
    )


# iptables' own tables in nftables (iptables-nft) that hold no rule and drop nothing: what kube-proxy, the kubelet
# and the CNI made by using iptables, left once their rules are gone (a host that never ran them has none).
_IPTABLES_TABLES = "|".join(f"{f}\\ {t}" for f in ("ip", "ip6") for t in ("filter", "nat", "mangle", "raw", "security"))
_EMPTY_TABLES = (
    f'nft list tables 2>/dev/null | while read -r _ f n; do case "$f $n" in {_IPTABLES_TABLES})'
    ' t=$(nft list table "$f" "$n");'
    " printf '%s\\n' \"$t\" | grep -vqE '^[[:space:]]*(table |chain |type |}|$)'"
    " || printf '%s\\n' \"$t\" | grep -q 'policy drop' || echo \"$f $n\";; esac; done"
)


def _rules() -> Step:
    tools = " ".join(TABLE_TOOLS)
    each = f'for t in {tools}; do command -v "$t-save" >/dev/null || continue;'
    return Step(
        "kube-proxy, CNI and VIP handoff packet-filter rules removed",
        # The rest of each table (the operator's own rules) is restored as it was.
        unless=f"( {each} if \"$t-save\" 2>/dev/null | grep -Eq '{RULES}'; then exit 1; fi; done )"
        f" && ! nft list tables 2>/dev/null | grep -Eqw '{NFT_TABLES}' && [ -z \"$({_EMPTY_TABLES})\" ]",
        run=f'{each} "$t-save" | grep -Ev \'{RULES}\' | "$t-restore"; done;'
        f" nft list tables 2>/dev/null | grep -Ew '{NFT_TABLES}' | while read -r _ family name;"
        ' do nft delete table "$family" "$name"; done;'
        f' {_EMPTY_TABLES} | while read -r family name; do nft delete table "$family" "$name"; done; true',
    )


def _routes(pod_cidr: str) -> Step:
    # Flannel's host-gw backend (and Calico's BGP) route each node's pod range through that node.
    return Step(
        f"routes into the pod network {pod_cidr} removed",
        unless=f'[ -z "$(ip route show root {pod_cidr})" ]',
        run=f"ip route flush root {pod_cidr}",
    )


def _ipvs() -> Step:
    return Step(
        "IPVS services cleared",
        unless='! command -v ipvsadm >/dev/null || [ -z "$(ipvsadm -Sn 2>/dev/null)" ]',
        run="ipvsadm --clear",
    )


# Paths a package owns (dpkg or rpm), one per line, of those given: kubefab wrote over them (haproxy.cfg) and they
# stay, with the package.
_OWNED = (
    'owned() { if command -v dpkg >/dev/null; then dpkg -S "$@" 2>/dev/null | sed "s/^[^:]*: //";'
    ' elif command -v rpm >/dev/null; then for p; do rpm -qf "$p" >/dev/null 2>&1 && echo "$p"; done; fi; };'
)
# A path is gone when it does not exist, or when it is a mount point left empty (the mount is not kubefab's).
_GONE = '{ { ! [ -e "$p" ] && ! [ -L "$p" ]; } || { mountpoint -q "$p" && [ -z "$(ls -A "$p")" ]; }; }'


def _removed(what: str, paths: list[str], keep_owned: bool = False) -> Step:
    kept = f'kept="$(owned {_q(paths)})"; ' if keep_owned else 'kept=""; '
    skip = 'if printf "%s\\n" "$kept" | grep -qxF -- "$p"; then continue; fi;'
    each = f"{_OWNED} {kept}for p in {_q(paths)}; do {skip}"
    return Step(
        f"{what} removed",
        unless=f"( {each} {_GONE} || exit 1; done )",
        run=f'{each} if mountpoint -q "$p"; then find "$p" -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +;'
        ' else rm -rf "$p"; fi; done; systemctl daemon-reload; systemctl reset-failed 2>/dev/null; true',
    )


def _empty_parents(dirs: list[str]) -> Step:
    """The directories kubefab's files and trees leave empty, deepest first; a directory a package owns stays."""

    def each(then: str) -> str:
        return (
            f'{_OWNED} for d in {_q(dirs)}; do if [ -d "$d" ] && [ -z "$(ls -A "$d")" ] && [ -z "$(owned "$d")" ];'
            f" then {then}; fi; done"
        )

    # Deepest first, so a parent is looked at once its children are gone.
    return Step("directories left empty removed", unless=f"( {each('exit 1')} )", run=each('rmdir "$d"'))


def _block(path: str, begin: str, end: str) -> Step:
    p = shlex.quote(path)
    return Step(
        f"kubefab's block in {path} removed",
        unless=f"! grep -qxF {shlex.quote(begin)} {p} 2>/dev/null",
        # Written in place: /etc/hosts may be a bind mount (containers), which a rename would fail on.
        run=f"sed '\\|^{begin}$|,\\|^{end}$|d' {p} > {p}.kubefab-reset && cat {p}.kubefab-reset > {p}"
        f" && rm -f {p}.kubefab-reset",
    )


def _swap_restored() -> Step:
    return Step(
        "swap entries in /etc/fstab restored",
        unless=f"! grep -q '^{FSTAB_MARK}' /etc/fstab",
        run=f"sed -i 's/^{FSTAB_MARK}//' /etc/fstab",
    )


def _user(name: str) -> Step:
    u = shlex.quote(name)
    return Step(f"user {name} removed", unless=f"! id -u {u} >/dev/null 2>&1", run=f"userdel {u}")


def parents(paths: list[str]) -> list[str]:
    """Every directory above `paths` short of the standard ones, deepest first."""
    found: set[str] = set()
    for p in paths:
        d = p.rsplit("/", 1)[0] or "/"
        while d not in STANDARD and d != "/":
            found.add(d)
            d = d.rsplit("/", 1)[0] or "/"
    return sorted(found, key=lambda d: (-d.count("/"), d))


def steps(inputs: Inputs, host: Host, delete_data: bool) -> tuple[Step, ...]:
    """What resetting `host` takes, in order: services down (the kubelet before its pods, containerd after them,
    etcd last), then what they leave running or mounted, then their files."""
    plans: list[Plan] = host_plans(inputs, host)
    services = list(dict.fromkeys(s for p in plans for s in p.services))[::-1]
    out: list[Step] = []
    for service in services:
        if service == "containerd":
            out.append(_pods_removed())
        out.append(_stopped(service))
    out += [_processes_gone(), _unmounted(), _interfaces(), _routes(str(inputs.cluster.network.pod_cidr)), _rules()]
    if inputs.cluster.kube_proxy_mode == "ipvs":
        out.append(_ipvs())
    files = list(dict.fromkeys([f.path for p in plans for f in p.files] + [b.path for p in plans for b in p.binaries]))
    data = data_dirs(inputs.cluster)
    held = [d for p in plans for d in p.directories if d.path in data]
    trees = list(dict.fromkeys([d.path for p in plans for d in p.directories if d.path not in data]))
    out.append(_removed("files and binaries", files, keep_owned=True))
    out.append(_removed("directories and runtime state", [*trees, *RUNTIME_TREES]))
    if delete_data and held:
        out.append(_removed("etcd data", list(dict.fromkeys(d.path for d in held))))
    out.append(_empty_parents(parents([*files, *trees, *RUNTIME_TREES])))
    out += [_block(b.path, b.begin, b.end) for p in plans for b in p.blocks]
    out.append(_swap_restored())
    # The owner of etcd's data stays while the data does: a new user's uid could not read it.
    keeps = set() if delete_data else {d.owner for d in held}
    out += [_user(u) for u in dict.fromkeys(u for p in plans for u in p.users) if u not in keeps]
    return tuple(out)
