"""One lab host: an overlayfs clone of the base image with its own identity, booted by systemd-nspawn
with systemd as PID 1 and sshd, attached to the lab bridge."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from kubefab.playbooks.lab import cgroups
from kubefab.playbooks.lab.commands import run
from kubefab.playbooks.lab.image import USER
from kubefab.playbooks.lab.keys import SSHKey
from kubefab.playbooks.lab.mounts import MOUNTS, remove_tree
from kubefab.playbooks.model import Network

# --register=no and --keep-unit: the machine has no machined/D-Bus to register with.
# @keyring, bpf: runc creates a session keyring per container and, on cgroup2, loads an eBPF device
# filter; nspawn's default system call filter refuses both.
# CAP_SYS_RESOURCE, CAP_IPC_LOCK: beyond nspawn's default set, what a node's root has and pods need (negative
# OOM scores for sandboxes, mlock). Granted only where the machine itself has them: one without
# CAP_SYS_RESOURCE gives none to its hosts, and kubefab then renders containerd's restrict_oom_score_adj.
NSPAWN = (
    "systemd-nspawn",
    "--boot",
    "--register=no",
    "--keep-unit",
    "--private-users=no",
    "--resolv-conf=off",
    "--timezone=off",
    "--console=read-only",
    "--system-call-filter=@keyring bpf",
    "--capability=CAP_SYS_RESOURCE,CAP_IPC_LOCK",
)
# On a cgroup2 machine hosts see cgroup2, as modern targets do. On a machine whose controllers are v1 (a
# hybrid one: its cgroup2 tree has none), the only place a pod's CPU, memory and pids limits can go is the v1
# controllers, so hosts boot in nspawn's legacy mode and get them (made writable by the image's
# lab-cgroups-rw.service); the lab's kubelets then run with failCgroupV1: false.


def nspawn_env(mounts_text: str) -> dict[str, str]:
    return {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "0" if cgroups.legacy(mounts_text) else "1"}


# containerd's overlayfs snapshotter cannot put its upper dirs on the host's overlay root: give it a
# directory on the machine's own filesystem.
CONTAINERD_DIR = "/var/lib/containerd"
# Kernel settings kubelet writes at start (its protectKernelDefaults list). They are not namespaced, and nspawn
# keeps /proc/sys read-only: each host bind-mounts its own copy of these files over them (fstab), so kubelet
# can set them without touching the machine's kernel.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
HOST_IFACE = "host0"
SERVICE_CIDR = Network().service_cidr  # the lab inventory keeps the default


@dataclass(frozen=True)
class File:
    content: str | bytes
    mode: int = 0o644
    owner: str = "root"


def nspawn_argv(host_dir: Path, name: str, bridge: str) -> list[str]:
    return [
        *NSPAWN,
        "-D",
        str(host_dir / "root"),
        "-M",
        name,
        f"--network-bridge={bridge}",
        f"--bind={host_dir / 'containerd'}:{CONTAINERD_DIR}",
    ]


# Every lab host's systemd, containerd and kubelet take inotify instances from the machine's one budget for
# root (no user namespaces): the default 128 runs out at about six hosts. Raised, never lowered (kind's advice).
INOTIFY_MINIMUMS = {"fs/inotify/max_user_instances": 8192, "fs/inotify/max_user_watches": 524288}


def raise_inotify_limits(log: Callable[[str], None], proc_sys: Path = Path("/proc/sys")) -> None:
    for key, minimum in INOTIFY_MINIMUMS.items():
        path = proc_sys / key
        if int(path.read_text()) < minimum:
            path.write_text(f"{minimum}\n")
            log(f"raised {key.replace('/', '.')} to {minimum} on this machine (lab hosts share it)")


def sysctl_copies(proc_sys: Path = Path("/proc/sys")) -> dict[str, File]:
    """A host's private copies of KUBELET_SYSCTLS (starting from the machine's values) and the fstab lines
    that bind them over /proc/sys."""
    files = {
        f"var/lib/lab-sysctl/{key.replace('/', '.')}": File((proc_sys / key).read_text()) for key in KUBELET_SYSCTLS
    }
    fstab = "".join(
        f"/var/lib/lab-sysctl/{key.replace('/', '.')} /proc/sys/{key} none bind 0 0\n" for key in KUBELET_SYSCTLS
    )
    return files | {"etc/fstab": File("# lab host: private copies of kernel settings kubelet writes\n" + fstab)}


def host_files(
    name: str,
    address: IPv4Interface,
    peers: list[tuple[str, IPv4Address]],
    host_keys: dict[str, SSHKey],
    authorized_key: str,
) -> dict[str, File]:
    """Everything that makes a clone of the base image one distinct host, by path inside it."""
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    hosts += "".join(f"{ip}\t{peer}\n" for peer, ip in peers)
    # No Gateway: the lab has no route out. The .network name overrides systemd's own host0 (DHCP) file.
    # Static addresses stay through a link flap (as on servers): fault tests cut and restore links.
    # The one route beyond the bridge is the Service CIDR's (kube-proxy rewrites those addresses to pods' on the
    # way out, after routing): hosts with a default route have it anyway, and host-network pods (flannel)
    # reach the `kubernetes` Service through it.
    network = (
        f"[Match]\nName={HOST_IFACE}\n\n[Network]\nAddress={address}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\nConfigureWithoutCarrier=yes\nIgnoreCarrierLoss=yes\n"
        f"\n[Route]\nDestination={SERVICE_CIDR}\n"
    )
    files = {
        "etc/hostname": File(f"{name}\n"),
        "etc/machine-id": File(f"{uuid.uuid4().hex}\n", 0o444),
        "etc/hosts": File(hosts),
        "etc/systemd/network/80-container-host0.network": File(network),
        # nspawn gives a container no /dev/kmsg, which kubelet opens at start (its OOM watcher): point it at
        # the console, as kind does for kubelet in a container.
        "etc/tmpfiles.d/kmsg.conf": File("L /dev/kmsg - - - - /dev/console\n"),
        f"home/{USER}/.ssh/authorized_keys": File(f"{authorized_key}\n", 0o600, USER),
    }
    files |= sysctl_copies()
    for kind, key in host_keys.items():
        files[f"etc/ssh/ssh_host_{kind}_key"] = File(key.private, 0o600)
        files[f"etc/ssh/ssh_host_{kind}_key.pub"] = File(f"{key.public} root@{name}\n")
    return files


def passwd_ids(passwd_text: str, user: str) -> tuple[int, int]:
    for line in passwd_text.splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise KeyError(f"user {user!r} not in the image's /etc/passwd")


def mount_clone(rootfs: Path, host_dir: Path) -> Path:
    """An overlayfs clone of the base image: writes land in host_dir/upper, the base stays untouched."""
    upper, work, root = host_dir / "upper", host_dir / "work", host_dir / "root"
    for d in (upper, work, root, host_dir / "containerd"):
        d.mkdir(parents=True)
    run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={rootfs},upperdir={upper},workdir={work}", root])
    return root


def write_files(root: Path, files: dict[str, File]) -> None:
    ids = {"root": (0, 0), USER: passwd_ids((root / "etc/passwd").read_text(), USER)}
    for rel, f in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()  # never write through a symlink of the image into the machine
        data = f.content.encode() if isinstance(f.content, str) else f.content
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, f.mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(path, f.mode)
        uid, gid = ids[f.owner]
        os.chown(path, uid, gid)
        if f.owner != "root":
            os.chown(path.parent, uid, gid)
            os.chmod(path.parent, 0o700)


def start(name: str, host_dir: Path, bridge: str) -> int:
    """Boot the host in the background (it outlives this process); returns the nspawn PID."""
    groups = cgroups.host_groups(name)
    for g in groups:
        cgroups.make_group(g)
    with open(host_dir / "console.log", "ab") as out:
        proc = subprocess.Popen(
            cgroups.enter_then_exec(groups, nspawn_argv(host_dir, name, bridge)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **nspawn_env(MOUNTS.read_text())},
        )
    return proc.pid


def ssh_ready(ip: str, timeout: float = 0.5) -> bool:
    """sshd answers with its banner (a TCP accept alone can come before sshd is serving)."""
    try:
        with socket.create_connection((ip, 22), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_ssh(ips: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(ips)
    while waiting and time.monotonic() < deadline:
        waiting = [ip for ip in waiting if not ssh_ready(ip)]
        if waiting:
            time.sleep(0.1)
    if waiting:
        raise TimeoutError(f"sshd did not answer within {timeout:.0f} s on {', '.join(waiting)}")


def is_nspawn_of(pid: int, name: str) -> bool:
    """The PID still belongs to this host's nspawn (not a process that reused the number)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return argv[0].endswith(b"systemd-nspawn") and name.encode() in argv


def request_stop(pid: int | None, name: str) -> None:
    """SIGTERM makes nspawn shut the host's systemd down cleanly (about 1.5 s)."""
    if pid is not None and is_nspawn_of(pid, name):
        os.kill(pid, signal.SIGTERM)


def wait_stopped(pid: int | None, name: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while pid is not None and is_nspawn_of(pid, name) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid is not None:
        # Reap it if this process started it (the same process ran `up`), so no zombie is left.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def clean_up(name: str, host_dir: Path) -> None:
    """Whatever a stopped host leaves: stray processes, its cgroups, its mounts, its files."""
    for g in cgroups.host_groups(name):
        cgroups.kill_group(g)
        cgroups.remove_group(g)
    remove_tree(host_dir)
