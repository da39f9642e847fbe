"""etcd snapshots: taken from a healthy member and checked (`kubefab etcd.backup`, and before every upgrade), a
rehearsal that restores one into a scratch directory on this machine and counts its keys (`etcd.restore
--check`), and the disaster restore of every member from one (`etcd.restore --yes`). A member's data is never
deleted: a restore moves it aside first."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import shlex
import socket
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kubefab.playbooks.components.binaries import KUBE_BIN
from kubefab.playbooks.components.etcd import DATA_DIR, endpoint, etcdctl
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Check
from kubefab.playbooks.ports import ETCD_PEER
from kubefab.playbooks.runner import Runner
from kubefab.playbooks.versions import release

BACKUPS = "backups"  # under the cluster directory
REMOTE_DIR = "/var/lib/kubefab/snapshots"
SUFFIX = ".db"
# A restored cluster's revisions jump ahead of anything a client saw before, and what lies below is marked
# compacted: every watch and cache (informers in kubelets, kube-proxy, CoreDNS, the apiservers' watch cache)
# then re-lists instead of waiting for revisions the snapshot never had.
BUMP_REVISION = 1_000_000_000


class BackupError(Exception):
    pass


@dataclass(frozen=True)
class Snapshot:
    path: Path
    revision: int | None
    keys: int | None
    sha256: str


def _stamp() -> str:
    """Now in UTC, as snapshot and set-aside names carry it."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def backups_dir(c: Cluster) -> Path:
    return c.dir / BACKUPS


def healthy_member(r: Runner) -> Host:
    """The first etcd member that answers its health check."""
    for h in r.cluster.etcd_hosts:
        if r.run(h, "etcd: member health", etcdctl(endpoint(h), "endpoint health"), check=False).ok:
            return h
    raise BackupError("no etcd member answers its health check")


def snapshot(r: Runner, directory: Path, label: str = "") -> Snapshot:
    """A snapshot from a healthy member, checked with etcdutl, in `directory` (0600) with a .sha256 beside it."""
    host = healthy_member(r)
    stamp = _stamp()
    run_id = f"{stamp}-{secrets.token_hex(4)}"  # two backups in the same second (a timer and an operator) stay apart
    remote = f"{REMOTE_DIR}/etcd-{run_id}{SUFFIX}"
    r.run(
        host,
        "etcd: snapshot",
        f"mkdir -p -m 0700 {REMOTE_DIR} && {etcdctl(endpoint(host), f'snapshot save {remote}')} >/dev/null"
        f" && chmod 0600 {remote}",
        timeout=300,
    )
    check = f"{KUBE_BIN}/etcdutl snapshot status {remote} -w json"
    status = json.loads(r.run(host, "etcd: check the snapshot", check).stdout)
    local = _reserve(directory, f"etcd-{stamp}{'-' + label if label else ''}")
    staged = f"/tmp/kubefab-{run_id}{SUFFIX}"
    user = shlex.quote(r.cluster.ssh_for(host).user)
    r.run(host, "etcd: stage the snapshot", f"install -m 0600 -o {user} {remote} {staged} && rm -f {remote}")
    try:
        r.remote(host).download("etcd: fetch the snapshot", staged, str(local))
    except BaseException:
        local.unlink(missing_ok=True)
        raise
    finally:
        r.run(host, "etcd: remove the staged snapshot", f"rm -f {staged}", check=False)
    local.chmod(0o600)
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    (directory / f"{local.name}.sha256").write_text(f"{digest}  {local.name}\n")
    return Snapshot(local, status.get("revision"), status.get("totalKey"), digest)


def _reserve(directory: Path, base: str) -> Path:
    """A new file named after `base` in `directory`, created exclusively so concurrent backups never share one."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for n in range(100):
        path = directory / f"{base}{f'.{n}' if n else ''}{SUFFIX}"
        try:
            path.touch(mode=0o600, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise BackupError(f"{directory}: 100 snapshots named {base}* already")


def prune(directory: Path, keep: int) -> list[Path]:
    """Remove all but the `keep` newest snapshots (and their .sha256); returns what was removed."""
    found = sorted(directory.glob(f"etcd-*{SUFFIX}"))
    gone = found[: max(0, len(found) - keep)]
    for p in gone:
        p.unlink()
        p.with_name(p.name + ".sha256").unlink(missing_ok=True)
    return gone


def verify_file(path: Path) -> str:
    """The snapshot's SHA-256, checked against the .sha256 beside it when there is one."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    recorded = path.with_name(path.name + ".sha256")
    if recorded.exists() and recorded.read_text().split()[0] != digest:
        raise BackupError(f"{path}: SHA-256 {digest} differs from {recorded}'s: the file changed or is damaged")
    return digest


def _etcd_tools(c: Cluster, version: str, arch: str, into: Path) -> tuple[Path, Path, Path]:
    """etcd, etcdctl and etcdutl from the bundle's etcd release, unpacked into `into`."""
    tarball = c.bundle_dir / release("etcd", version, arch).bundle_path
    if not tarball.is_file():
        raise BackupError(f"{tarball}: not in the bundle; `kubefab bundle` fetches it")
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            if member.isfile() and Path(member.name).name in ("etcd", "etcdctl", "etcdutl"):
                member.name = Path(member.name).name
                tar.extract(member, into, filter="data")
    return into / "etcd", into / "etcdctl", into / "etcdutl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rehearse(c: Cluster, path: Path, version: str, arch: str) -> dict[str, int]:
    """Restore `path` into a scratch directory on this machine and start etcd on it (loopback only) to count its
    keys: what a restore would bring back, the cluster untouched. Returns the revision and the key count."""
    with tempfile.TemporaryDirectory(prefix="kubefab-restore-check-") as tmp:
        work = Path(tmp)
        etcd, etcdctl_bin, etcdutl = _etcd_tools(c, version, arch, work)
        data = work / "data"
        run = subprocess.run(
            [str(etcdutl), "snapshot", "restore", str(path), "--data-dir", str(data)],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise BackupError(f"{path}: etcdutl snapshot restore failed: {run.stderr.strip()[-500:]}")
        client, peer = _free_port(), _free_port()
        url = f"http://127.0.0.1:{client}"
        server = subprocess.Popen(
            [
                str(etcd),
                "--data-dir",
                str(data),
                "--listen-client-urls",
                url,
                "--advertise-client-urls",
                url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--listen-metrics-urls",
                f"http://127.0.0.1:{_free_port()}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                count = subprocess.run(
                    [str(etcdctl_bin), "--endpoints", url, "get", "", "--prefix", "--count-only", "-w", "fields"],
                    capture_output=True,
                    text=True,
                )
                if count.returncode == 0:  # lines of `"Name" : value`
                    fields = dict(re.findall(r'^"(\w+)" : (\d+)$', count.stdout, re.M))
                    return {"revision": int(fields["Revision"]), "keys": int(fields.get("Count", 0))}
                if time.monotonic() > deadline or server.poll() is not None:
                    raise BackupError(f"{path}: the restored member did not answer: {count.stderr.strip()[-300:]}")
                time.sleep(0.3)
        finally:
            server.terminate()
            server.wait(10)


def restore_command(c: Cluster, host: Host, snapshot_path: str, token: str, aside: str) -> str:
    """On one member: its data moved aside (kept), the snapshot restored as this member of a new cluster
    identity (`token`), owned by etcd."""
    cluster = ",".join(f"{m.name}=https://{m.address}:{ETCD_PEER}" for m in c.etcd_hosts)
    restore = (
        f"{KUBE_BIN}/etcdutl snapshot restore {snapshot_path} --name {host.name} --initial-cluster {cluster} "
        f"--initial-cluster-token {token} --initial-advertise-peer-urls https://{host.address}:{ETCD_PEER} "
        f"--data-dir {DATA_DIR} --bump-revision {BUMP_REVISION} --mark-compacted"
    )
    return (
        f"if [ -e {DATA_DIR} ]; then mv {DATA_DIR} {aside}; fi && {restore} >/dev/null && "
        f"chown -R etcd:etcd {DATA_DIR} && chmod 0700 {DATA_DIR} && rm -f {snapshot_path}"
    )


def restore(r: Runner, path: Path, log) -> str:
    """Every member restored from `path`: the control plane stopped, etcd stopped everywhere, each member's data
    moved aside and restored with one new cluster token, etcd started on all members together, then the control
    plane. Returns where each member's former data was kept."""
    c = r.cluster
    stamp = _stamp()
    token, aside = f"etcd-{c.name}-restored-{stamp}", f"{DATA_DIR}.before-restore-{stamp}"
    control = "kube-apiserver kube-controller-manager kube-scheduler"
    staged = f"/tmp/kubefab-restore-{stamp}{SUFFIX}"
    for h in c.etcd_hosts:
        r.remote(h).upload("etcd.restore: send the snapshot", None, staged, str(path))
    log("the snapshot is on every member")
    r.each(
        "etcd.restore",
        c.control_plane,
        lambda h: r.run(h, "etcd.restore: stop the control plane", f"systemctl stop {control}"),
    )
    log(f"stopped {control} on {', '.join(h.name for h in c.control_plane)}")
    r.each("etcd.restore", c.etcd_hosts, lambda h: r.run(h, "etcd.restore: stop etcd", "systemctl stop etcd"))
    r.each(
        "etcd.restore",
        c.etcd_hosts,
        lambda h: r.run(h, "etcd.restore: restore the member", restore_command(c, h, staged, token, aside)),
    )
    log(f"restored every member (new cluster token {token}); former data kept in {aside}")
    r.each(
        "etcd.restore", c.etcd_hosts, lambda h: r.run(h, "etcd.restore: start etcd", "systemctl start --no-block etcd")
    )
    every = ",".join(endpoint(h) for h in c.etcd_hosts)
    r.wait(c.etcd_hosts[0], Check("etcd.restore: every member healthy", etcdctl(every, "endpoint health"), 120))
    log("etcd healthy on every member")
    r.each(
        "etcd.restore",
        c.control_plane,
        lambda h: r.run(h, "etcd.restore: start the control plane", f"systemctl start {control}"),
    )
    return aside
