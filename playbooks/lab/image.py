"""The base image: one debootstrap of the machine's Debian suite with every OS package a deploy needs,
cleaned of what each host must own (ssh host keys, machine-id), cached until its package list changes.

Release binaries (etcd, containerd, ...) are deliberately absent: kubefab uploads them from the bundle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from kubefab.playbooks.lab.aptsource import AptSource, machine_source
from kubefab.playbooks.lab.commands import run
from kubefab.playbooks.lab.mounts import remove_tree
from kubefab.playbooks.lab.settings import LabPaths

PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "sudo",
    "python3",
    "python3-yaml",
    "procps",
    "iputils-ping",
    "openssl",
    "ca-certificates",
    "curl",
    "kmod",
    "haproxy",
    "keepalived",
    "conntrack",
    "socat",
    "ipset",
    "iptables",
    "nftables",
    # The lab's private container registry (tests run it on one host with a certificate from the cluster CA).
    "docker-registry",
)
# Debian enables these on install; the deploy enables what it needs.
DISABLED_SERVICES = ("etcd", "haproxy", "keepalived", "containerd", "docker-registry")
# Periodic jobs that only cost an idle host memory and CPU (apt's have no route to a mirror anyway).
DISABLED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
)
USER = "kubefab"
# Bump when the steps below change, so cached images are rebuilt.
RECIPE = 4

SSHD_CONFIG = "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
RESOLV_CONF = "# Lab hosts have no DNS and no route out; lab names are in /etc/hosts.\n"
# On a machine with cgroup v1 controllers, hosts boot in nspawn's legacy mode, which mounts the controller
# hierarchies read-only (each scoped to the host's own group by its cgroup namespace). runc and the kubelet
# create child groups in them for every pod: this makes them writable, in the host's mount namespace only,
# before anything else starts.
CGROUPS_RW = """#!/bin/sh
# Lab host: remount nspawn's read-only cgroup v1 controller hierarchies read-write.
awk '$3 == "cgroup" && $4 ~ /(^|,)ro(,|$)/ && $4 !~ /name=/ {print $2}' /proc/self/mounts |
while read -r dir; do mount -o remount,bind,rw "$dir"; done
"""
# systemd-sysctl skips containers (/proc/sys is read-only there), but a host's network settings live in its own
# namespace and are writable: applied at boot from /etc/sysctl.d, as on a machine, so a rebooted host keeps
# what the deploy set (ip_forward and the bridge's netfilter calls: pods reach other nodes through them).
SYSCTL_UNIT = """[Unit]
Description=Lab host: kernel settings of /etc/sysctl.d that a container may set (its network namespace's)
DefaultDependencies=no
After=local-fs.target systemd-modules-load.service
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=-/usr/sbin/sysctl --quiet --system

[Install]
WantedBy=sysinit.target
"""
CGROUPS_RW_UNIT = """[Unit]
Description=Lab host: writable cgroup v1 controllers
DefaultDependencies=no
Before=sysinit.target
ConditionPathIsMountPoint=/sys/fs/cgroup/cpu

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/lab-cgroups-rw

[Install]
WantedBy=sysinit.target
"""


def image_key(packages: tuple[str, ...], suite: str) -> str:
    text = json.dumps({"packages": sorted(packages), "suite": suite, "recipe": RECIPE})
    return hashlib.sha256(text.encode()).hexdigest()


def current_image(paths: LabPaths) -> Path | None:
    """The cached base rootfs if it was built for today's package list and suite."""
    key = image_key(PACKAGES, machine_source().suite)
    if paths.image_stamp.is_file() and paths.image_stamp.read_text().strip() == key and paths.rootfs.is_dir():
        return paths.rootfs
    return None


def ensure_image(paths: LabPaths, log: Callable[[str], None] = print) -> Path:
    """The cached base rootfs, (re)built when the package list or the suite changed."""
    if (built := current_image(paths)) is not None:
        return built
    source = machine_source()
    key = image_key(PACKAGES, source.suite)
    log(f"building the base image ({source.suite}, {len(PACKAGES)} packages), about 70 s ...")
    staging = paths.image / "rootfs.new"
    remove_tree(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    debootstrap(staging, source)
    customize(staging)
    paths.image_stamp.unlink(missing_ok=True)
    remove_tree(paths.rootfs)
    staging.rename(paths.rootfs)
    paths.image_stamp.write_text(key + "\n")
    return paths.rootfs


def debootstrap(target: Path, source: AptSource) -> None:
    run(
        [
            "debootstrap",
            "--variant=minbase",
            "--components=main",
            f"--include={','.join(PACKAGES)}",
            source.suite,
            target,
            source.mirror,
        ]
    )


def customize(root: Path) -> None:
    # Identity every host must own: regenerated per host, never shared through the image.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)  # dbus falls back to /etc/machine-id
    (root / "var/lib/systemd/random-seed").unlink(missing_ok=True)
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text(RESOLV_CONF)

    units = root / "usr/lib/systemd/system"
    wanted_off = [*(f"{s}.service" for s in DISABLED_SERVICES), *DISABLED_UNITS]
    present = [u for u in wanted_off if (units / u).exists()]
    if present:
        run(["systemctl", f"--root={root}", "disable", *present])
    script = root / "usr/local/sbin/lab-cgroups-rw"
    script.write_text(CGROUPS_RW)
    script.chmod(0o755)
    (units / "lab-cgroups-rw.service").write_text(CGROUPS_RW_UNIT)
    (units / "lab-sysctl.service").write_text(SYSCTL_UNIT)
    run(
        [
            "systemctl",
            f"--root={root}",
            "enable",
            "systemd-networkd.service",
            "lab-cgroups-rw.service",
            "lab-sysctl.service",
        ]
    )

    run(["chroot", root, "useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", USER])
    sudoers = root / "etc/sudoers.d" / USER
    sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    (root / "etc/ssh/sshd_config.d/kubefab-lab.conf").write_text(SSHD_CONFIG)
    # In nspawn's legacy cgroup mode a container's systemd is never told a cgroup emptied (that needs the
    # machine's release agent), so stopping pods' scopes at shutdown always runs into the stop timeout.
    (root / "etc/systemd/system.conf.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/system.conf.d/lab-host.conf").write_text("[Manager]\nDefaultTimeoutStopSec=10s\n")

    run(["chroot", root, "apt-get", "clean"])
    for cached in [*(root / "var/lib/apt/lists").glob("*_*"), *(root / "var/cache/apt").glob("*.bin")]:
        cached.unlink()
