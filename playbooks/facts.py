"""What is on a host: one shell command gathers everything in a single SSH round trip, and a pure parser
turns its output into `Facts`, so every rule that depends on a host is testable without SSH."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Literal

# Where kubefab installs CA certificates (as pki.profiles places them; the facts stay free of the PKI code):
# playbooks.identity compares them with the cluster directory's.
TRUST_FILES = (
    "/etc/kubernetes/pki/ca.crt",
    "/etc/kubernetes/pki/etcd/ca.crt",
    "/etc/kubernetes/pki/front-proxy-ca.crt",
    "/etc/etcd/pki/ca.crt",
)

# The services whose running version `upgrade` and deploy's version check read (from the process's own executable,
# which is the version running even when the file on disk was replaced since).
VERSIONED_SERVICES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)

# Each line is `key=value`. Commands that may be missing on a host print nothing for their key.
COMMAND = r"""
. /etc/os-release 2>/dev/null
echo "os_id=${ID:-unknown}"
echo "os_version=${VERSION_ID:-}"
echo "os_like=${ID_LIKE:-}"
echo "arch=$(uname -m)"
echo "hostname=$(hostname)"
echo "cgroup_fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
echo "swap=$(awk 'NR > 1 {print $1}' /proc/swaps | tr '\n' ' ')"
echo "fstab_swap=$(awk '$1 !~ /^#/ && $3 == "swap" {print $1}' /etc/fstab 2>/dev/null | tr '\n' ' ')"
echo "ntp_synchronized=$(timedatectl show -p NTPSynchronized --value 2>/dev/null)"
echo "time=$(date +%s)"
echo "listening=$(ss -Hltnp 2>/dev/null | awk '{print $4 "|" $6}' | tr '\n' ' ')"
echo "etcd_member=$(test -d /var/lib/etcd/member && echo yes || echo no)"
echo "selinux=$(getenforce 2>/dev/null)"
echo "firewalld=$(systemctl is-active firewalld 2>/dev/null)"
echo "firewalld_enabled=$(systemctl is-enabled firewalld 2>/dev/null)"
echo "package_manager=$(basename "$(command -v dnf || command -v yum || command -v apt-get)" 2>/dev/null)"
echo "systemd=$(cat /proc/1/comm 2>/dev/null)"
stub=no; grep -qs '^nameserver 127\.0\.0\.53' /etc/resolv.conf && test -s /run/systemd/resolve/resolv.conf && stub=yes
echo "resolv_stub=$stub"
trust=; for f in TRUST_FILES; do test -f "$f" && trust="$trust $f|$(base64 -w0 "$f")"; done
echo "trust=$trust"
running=; for s in RUNNING_SERVICES; do
  pid=$(systemctl show -p MainPID --value "$s" 2>/dev/null); [ "${pid:-0}" -gt 0 ] 2>/dev/null || continue
  v=$(/proc/"$pid"/exe --version 2>/dev/null | grep -o '[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*' | head -n 1)
  [ -n "$v" ] && running="$running $s|$v"
done
echo "running=$running"
bnd=$(awk '/^CapBnd/ {print $2}' /proc/self/status 2>/dev/null)
echo "cap_sys_resource=$(( (0x${bnd:-ffffffffff} >> 24) & 1 ))"
""".replace("TRUST_FILES", " ".join(TRUST_FILES)).replace("RUNNING_SERVICES", " ".join(VERSIONED_SERVICES))

Family = Literal["rhel", "debian", "unknown"]
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "amd64": "amd64"}

# Operating systems kubefab supports, by os-release ID and the major versions accepted.
SUPPORTED_OS: dict[str, tuple[str, ...]] = {
    "centos": ("7", "9"),
    "rocky": ("8", "9"),
    "almalinux": ("8", "9"),
    "rhel": ("8", "9"),
    "debian": ("12",),
    "ubuntu": ("22.04", "24.04"),
}


@dataclass(frozen=True)
class Facts:
    os_id: str
    os_version: str
    os_like: str
    arch: str  # Go/Kubernetes naming: amd64, arm64
    hostname: str
    cgroup_version: int  # 2 on the unified hierarchy, 1 otherwise
    swap: tuple[str, ...]
    fstab_swap: tuple[str, ...]
    ntp_synchronized: bool | None  # None: timedatectl not available
    time: int
    listening: dict[int, str] = field(default_factory=dict)  # port -> process name ("" when unknown)
    etcd_member: bool = False
    selinux: str = ""  # Enforcing / Permissive / Disabled, empty when absent
    firewalld_active: bool = False
    firewalld_enabled: bool = False  # starts at the next boot even when stopped now
    package_manager: str = ""
    init: str = ""
    # /etc/resolv.conf points at systemd-resolved's stub (127.0.0.53, Ubuntu's default), which pods cannot
    # reach: kubelet must hand them the upstream servers in /run/systemd/resolve/resolv.conf instead.
    resolved_stub: bool = False
    # root holds CAP_SYS_RESOURCE: it may give processes a negative oom_score_adj. Missing in some containers
    # (nspawn, LXC), where containerd must keep pods' scores at or above its own.
    cap_sys_resource: bool = True
    trust: dict[str, bytes] = field(default_factory=dict)  # CA certificate files found: path -> content
    running: dict[str, str] = field(default_factory=dict)  # service -> version its process runs ("1.37.2")

    @property
    def family(self) -> Family:
        words = {self.os_id, *self.os_like.split()}
        if words & {"rhel", "centos", "fedora", "rocky", "almalinux"}:
            return "rhel"
        if words & {"debian", "ubuntu"}:
            return "debian"
        return "unknown"

    @property
    def supported(self) -> bool:
        majors = SUPPORTED_OS.get(self.os_id, ())
        return self.os_version in majors or self.os_version.split(".")[0] in majors

    @property
    def os(self) -> str:
        return f"{self.os_id} {self.os_version}".strip()


def parse(text: str) -> Facts:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[a-z_]+", key):
            values[key] = value.strip()
    ntp = values.get("ntp_synchronized", "")
    return Facts(
        os_id=values.get("os_id", "unknown"),
        os_version=values.get("os_version", ""),
        os_like=values.get("os_like", ""),
        arch=ARCH.get(values.get("arch", ""), values.get("arch", "")),
        hostname=values.get("hostname", ""),
        cgroup_version=2 if values.get("cgroup_fs") == "cgroup2fs" else 1,
        swap=tuple(values.get("swap", "").split()),
        fstab_swap=tuple(values.get("fstab_swap", "").split()),
        ntp_synchronized={"yes": True, "no": False}.get(ntp),
        time=int(values.get("time") or 0),
        listening=parse_listening(values.get("listening", "")),
        etcd_member=values.get("etcd_member") == "yes",
        selinux=values.get("selinux", ""),
        firewalld_active=values.get("firewalld") == "active",
        firewalld_enabled=values.get("firewalld_enabled") == "enabled",
        package_manager=values.get("package_manager", ""),
        init=values.get("systemd", ""),
        resolved_stub=values.get("resolv_stub") == "yes",
        cap_sys_resource=values.get("cap_sys_resource", "1") != "0",
        trust=parse_trust(values.get("trust", "")),
        running=dict(item.split("|", 1) for item in values.get("running", "").split() if "|" in item),
    )


def parse_trust(text: str) -> dict[str, bytes]:
    """'/etc/kubernetes/pki/ca.crt|<base64>' items -> {path: content}; an item that does not decode is empty."""
    out: dict[str, bytes] = {}
    for item in text.split():
        path, _, encoded = item.partition("|")
        try:
            out[path] = base64.b64decode(encoded, validate=True)
        except ValueError:
            out[path] = b""
    return out


def parse_listening(text: str) -> dict[int, str]:
    """`ss -Hltnp` columns 4 and 6 joined by '|': '0.0.0.0:2379|users:(("etcd",pid=7,fd=8))' -> {2379: 'etcd'}."""
    out: dict[int, str] = {}
    for item in text.split():
        address, _, users = item.partition("|")
        port = address.rsplit(":", 1)[-1]
        if port.isdigit():
            name = re.search(r'\(\("([^"]+)"', users)
            out.setdefault(int(port), name.group(1) if name else "")
    return out
