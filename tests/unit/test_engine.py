"""The deploy engine's pure parts, without SSH: facts parsing, preflight rules, the host-state script and its
parser, managed blocks, bundle verification, phase selection and sudo wrapping."""

from __future__ import annotations

import getpass
import grp
import gzip
import hashlib
import io
import os
import shlex
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest
import yaml
from invoke.exceptions import Exit

from playbooks import bundle, components, facts, preflight
from playbooks.apply import _Upload, install_script, parse_state, state_script, with_block
from playbooks.inventory import load
from playbooks.plan import Binary, Block, Directory, File, Plan, Step
from playbooks.remote import AcceptNew, Remote
from playbooks.tasks.deploy import select
from playbooks.versions import stack
from tests.conftest import EXAMPLE

DEBIAN = """os_id=debian
os_version=12
os_like=
arch=x86_64
hostname=k8s-1
cgroup_fs=cgroup2fs
swap=
fstab_swap=
ntp_synchronized=yes
time=1700000000
listening=0.0.0.0:22|users:(("sshd",pid=90,fd=3)) 192.168.10.11:2379|users:(("etcd",pid=7,fd=8))
etcd_member=yes
selinux=
firewalld=inactive
package_manager=apt-get
systemd=systemd
"""
CENTOS7 = """os_id=centos
os_version=7
os_like=rhel fedora
arch=x86_64
hostname=node7
cgroup_fs=tmpfs
swap=/dev/dm-1
fstab_swap=/dev/mapper/centos-swap
ntp_synchronized=no
time=1700000010
listening=*:6443|users:(("nginx",pid=1,fd=3))
etcd_member=no
selinux=Enforcing
firewalld=active
package_manager=yum
systemd=systemd
"""


def test_parse_debian_facts() -> None:
    f = facts.parse(DEBIAN)
    assert (f.family, f.arch, f.cgroup_version, f.swap, f.supported) == ("debian", "amd64", 2, (), True)
    assert f.listening == {22: "sshd", 2379: "etcd"}
    assert f.etcd_member and f.ntp_synchronized and not f.firewalld_active


def test_parse_centos7_facts() -> None:
    f = facts.parse(CENTOS7)
    assert (f.family, f.os, f.cgroup_version, f.selinux, f.package_manager) == ("rhel", "centos 7", 1,
                                                                                 "Enforcing", "yum")
    assert f.swap == ("/dev/dm-1",) and f.fstab_swap == ("/dev/mapper/centos-swap",)
    assert f.firewalld_active and f.ntp_synchronized is False and f.supported


def test_facts_command_runs_on_this_machine() -> None:
    """The one-round-trip command is plain sh and parses on a real system."""
    out = subprocess.run(["sh", "-c", facts.COMMAND], capture_output=True, text=True, timeout=30)
    f = facts.parse(out.stdout)
    assert f.os_id != "unknown" and f.arch in ("amd64", "arm64") and f.time > 0


@pytest.fixture
def cluster():
    return load(EXAMPLE)


def findings(cluster, overrides: dict[str, str], arch: str = "amd64", now: float = 1700000000):
    texts = {h.name: DEBIAN.replace("hostname=k8s-1", f"hostname={h.name}") for h in cluster.hosts}
    texts |= overrides
    return preflight.check(cluster, {n: facts.parse(t) for n, t in texts.items()}, arch, now)


def failed(found) -> set[tuple[str, str]]:
    return {(f.host, f.check) for f in found if f.status == "fail"}


def test_preflight_passes_on_good_hosts(cluster) -> None:
    assert not failed(findings(cluster, {}))


def test_preflight_port_held_by_another_process(cluster) -> None:
    busy = DEBIAN.replace('192.168.10.11:2379|users:(("etcd"', '0.0.0.0:6443|users:(("nginx"')
    found = findings(cluster, {"k8s-2": busy.replace("hostname=k8s-1", "hostname=k8s-2")})
    assert ("k8s-2", "ports free") in failed(found)
    detail = next(f.detail for f in found if f.host == "k8s-2" and f.check == "ports free")
    assert "6443 held by nginx" in detail


def test_preflight_own_services_do_not_count_as_busy(cluster) -> None:
    assert ("k8s-1", "ports free") not in failed(findings(cluster, {}))


def test_preflight_centos7_host(cluster) -> None:
    found = findings(cluster, {"k8s-3": CENTOS7})
    assert {("k8s-3", "cgroup"), ("k8s-3", "etcd data")} <= failed(found)  # v1 refused; new member in old cluster
    warnings = {(f.host, f.check) for f in found if f.status == "warn"}
    assert {("k8s-3", "swap"), ("k8s-3", "time")} <= warnings
    assert ("k8s-3", "operating system") not in failed(found)


def test_preflight_warns_of_a_stopped_but_enabled_firewalld(cluster) -> None:
    """firewall: open adds rules to a running firewalld only; one that starts at the next boot would block ports."""
    stopped = DEBIAN.replace("hostname=k8s-1", "hostname=k8s-2") + "firewalld_enabled=enabled\n"
    found = findings(cluster, {"k8s-2": stopped})
    assert [(f.host, f.status) for f in found if f.check == "firewall"] == [("k8s-2", "warn")]
    assert "enabled but stopped" in next(f.detail for f in found if f.check == "firewall")


def test_preflight_cgroup_v1_allowed(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text()) | {"cgroup_v1": "allow"}
    (tmp_path / "i.yaml").write_text(yaml.safe_dump(data))
    c = load(tmp_path / "i.yaml")
    found = findings(c, {"k8s-3": CENTOS7.replace("etcd_member=no", "etcd_member=yes")})
    assert ("k8s-3", "cgroup") not in failed(found)


def test_preflight_clock_skew_arch_os_and_names(cluster) -> None:
    skewed = DEBIAN.replace("time=1700000000", "time=1700000400").replace("hostname=k8s-1", "hostname=k8s-2")
    found = findings(cluster, {"k8s-2": skewed, "k8s-3": DEBIAN.replace("os_version=12", "os_version=10")
                               .replace("x86_64", "aarch64")})
    assert {("k8s-2", "time"), ("k8s-3", "operating system"), ("k8s-3", "architecture")} <= failed(found)
    assert {("k8s-1", "host name"), ("k8s-3", "host name")} <= failed(found)  # k8s-3 also says hostname=k8s-1


def test_state_script_and_parser_round_trip(tmp_path: Path) -> None:
    present = tmp_path / "present.conf"
    present.write_text("hello\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    plan = Plan("h", "test",
                files=(File(str(present), b"hello\n"), File(str(tmp_path / "absent"), b"x")),
                blocks=(Block(str(hosts), "kubefab t", "10.0.0.1 a"),),
                directories=(Directory(str(tmp_path)),),
                users=("root", "no-such-user-kubefab"),
                steps=(Step("true step", "true", "false"), Step("false step", "false", "true")))
    out = subprocess.run(["sh", "-c", state_script(plan)], capture_output=True, text=True, timeout=30).stdout
    state = parse_state(out)
    assert state["F"][str(present)].sha256 == hashlib.sha256(b"hello\n").hexdigest()
    assert state["F"][str(tmp_path / "absent")] is None
    assert state["B"][str(hosts)] == "127.0.0.1 localhost\n"
    assert state["D"][str(tmp_path)] is not None
    assert state["U"] == {"root": True}
    assert state["S"] == {0: True, 1: False}


def test_installed_binary_is_not_hashed_again_until_it_changes(tmp_path: Path) -> None:
    """The install records the binary's SHA-256 with its inode, size and ctime; the state script trusts the
    record only while all three match. The recorded value here is deliberately not the content's hash, so
    the test sees which one the script reported."""
    record, target, sent = tmp_path / "state" / "binaries", tmp_path / "bin" / "etcd", tmp_path / "sent.gz"
    sent.write_bytes(gzip.compress(b"the etcd binary"))
    recorded = "0" * 64
    upload = _Upload(str(target), 0o755, getpass.getuser(), grp.getgrgid(os.getgid()).gr_name, (), gzipped=True,
                     sha256=recorded)
    subprocess.run(["sh", "-c", install_script([(upload, str(sent))], record=str(record))], check=True, timeout=30)
    assert target.read_bytes() == b"the etcd binary"
    plan = Plan("h", "t", binaries=(Binary("x", None, str(target)),))

    def reported() -> str:
        out = subprocess.run(["sh", "-c", state_script(plan, record=str(record))], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        return parse_state(out)["F"][str(target)].sha256

    assert reported() == recorded
    with target.open("r+b") as f:  # same inode, same size: only the ctime moves
        f.write(b"THE")
    assert reported() == hashlib.sha256(target.read_bytes()).hexdigest()
    # A second install replaces the path's line instead of adding one.
    subprocess.run(["sh", "-c", install_script([(upload, str(sent))], record=str(record))], check=True, timeout=30)
    assert [line.split("\t")[0] for line in record.read_text().splitlines()] == [str(target)]
    assert reported() == recorded


def test_state_script_quotes_paths(tmp_path: Path) -> None:
    odd = tmp_path / "it's here; rm -rf x"
    odd.write_text("x")
    plan = Plan("h", "t", files=(File(str(odd), b"x"),))
    out = subprocess.run(["sh", "-c", state_script(plan)], capture_output=True, text=True, timeout=30).stdout
    assert parse_state(out)["F"][str(odd)] is not None


def test_block_is_appended_replaced_and_stable() -> None:
    block = Block("/etc/hosts", "kubefab c", "10.0.0.1 a")
    once = with_block("127.0.0.1 localhost", block)
    assert once == "127.0.0.1 localhost\n# BEGIN kubefab c\n10.0.0.1 a\n# END kubefab c\n"
    assert with_block(once, block) == once
    changed = with_block(once + "::1 localhost6\n", Block("/etc/hosts", "kubefab c", "10.0.0.2 b"))
    assert changed == "127.0.0.1 localhost\n# BEGIN kubefab c\n10.0.0.2 b\n# END kubefab c\n::1 localhost6\n"


def test_select_phases() -> None:
    assert select(None, None)[0] == "prepare" and select(None, None)[-1] == "addons"
    assert select("etcd,lb", None) == ["etcd", "lb"]
    assert "addons" not in select(None, "addons")
    with pytest.raises(Exit, match="unknown phase"):
        select("etdc", None)


def test_sudo_wraps_the_whole_step_in_one_root_shell(cluster) -> None:
    remote = Remote.__new__(Remote)
    remote.sudo = True
    wrapped = remote.wrap("a && b > '/x y'")
    assert wrapped == "sudo -n sh -c " + shlex.quote("a && b > '/x y'")
    assert shlex.split(wrapped)[-1] == "a && b > '/x y'"


def recorded_bundle(tmp_path: Path, origin: str) -> tuple:
    """A bundle whose manifest records each file's SHA-256, as `bundle --from-source` (origin "source") or
    `bundle` (origin "download") write it; the files are decoys, not the published ones."""
    data = yaml.safe_load(EXAMPLE.read_text()) | {"bundle": str(tmp_path / "bundle")}
    (tmp_path / "i.yaml").write_text(yaml.safe_dump(data))
    c = load(tmp_path / "i.yaml")
    s = stack(c.kubernetes_version)
    files = {}
    for r in components.releases(c, s, "amd64"):
        path = tmp_path / "bundle" / r.bundle_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(r.component.encode())
        files[r.bundle_path] = bundle.Entry(r.component, r.version, r.bundle_path,
                                            hashlib.sha256(r.component.encode()).hexdigest(), "test", origin)
    bundle.write_manifest(tmp_path / "bundle", bundle.Manifest("amd64", files))
    return c, s


def test_bundle_missing_files_are_one_error_with_the_fetch_command(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text()) | {"bundle": str(tmp_path / "empty")}
    (tmp_path / "i.yaml").write_text(yaml.safe_dump(data))
    c = load(tmp_path / "i.yaml")
    s = stack(c.kubernetes_version)
    (problem,) = bundle.verify(c, components.releases(c, s, "amd64"), s, "amd64")
    assert "6 release file(s) missing" in problem
    assert "kubernetes-server-linux-amd64.tar.gz" in problem and "crictl" in problem
    assert f"fab bundle --inventory {c.source}" in problem
    assert f"kubefab bundle --from-source --inventory {c.source}" in problem


def test_built_files_are_checked_against_the_sha256_recorded_when_built(tmp_path: Path) -> None:
    c, s = recorded_bundle(tmp_path, bundle.BUILT)
    assert bundle.verify(c, components.releases(c, s, "amd64"), s, "amd64") == []
    tampered = tmp_path / "bundle" / components.releases(c, s, "amd64")[0].bundle_path
    tampered.write_bytes(b"changed")
    (problem,) = bundle.verify(c, components.releases(c, s, "amd64"), s, "amd64")
    assert "differs from the SHA-256 recorded when it was built" in problem and str(tampered) in problem


def test_downloaded_files_are_checked_against_published_checksums(tmp_path: Path) -> None:
    c, s = recorded_bundle(tmp_path, bundle.DOWNLOADED)
    problems = bundle.verify(c, components.releases(c, s, "amd64"), s, "amd64")
    assert problems and all("differs from the published" in p for p in problems)
    assert any("sha512" in p for p in problems)  # the server tarball's CHANGELOG checksum


def test_mirror_url() -> None:
    url = "https://dl.k8s.io/v1.35.4/kubernetes-server-linux-amd64.tar.gz"
    assert bundle.mirrored(url, None) == url
    assert bundle.mirrored(url, "http://m/kube/") == f"http://m/kube/{url.removeprefix('https://')}"


def test_binaries_are_read_from_archives(tmp_path: Path) -> None:
    archive = tmp_path / "b" / "x" / "1" / "amd64" / "x.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("./bin/tool")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    b = Binary("x/1/amd64/x.tar.gz", "bin/tool", "/usr/local/bin/tool")
    assert bundle.extracted(tmp_path / "b", b).read_bytes() == b"hello"
    assert gzip.decompress(bundle.compressed(tmp_path / "b", b).read_bytes()) == b"hello"
    with pytest.raises(FileNotFoundError, match="has no member bin/other"):
        bundle.extracted(tmp_path / "b", Binary("x/1/amd64/x.tar.gz", "bin/other", "/x"))


def test_a_cached_binary_is_never_seen_half_written(tmp_path: Path) -> None:
    """Every host's thread asks for the same binary when a phase starts on a fresh bundle: none may read a file
    another is still writing (seen as `gzip: invalid compressed data--crc error` on the hosts). The cached
    files appear only complete, and threads asking at once all get the same complete copy."""
    data = os.urandom(16 << 20)
    archive = tmp_path / "b" / "x" / "1" / "amd64" / "x.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("bin/tool")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    b = Binary("x/1/amd64/x.tar.gz", "bin/tool", "/usr/local/bin/tool")
    plain = tmp_path / "b" / bundle.CACHE / b.source / "bin/tool"
    seen = []
    with ThreadPoolExecutor(4) as pool:
        copies = [pool.submit(lambda: bundle.compressed(tmp_path / "b", b).read_bytes()) for _ in range(4)]
        while not all(c.done() for c in copies):
            if plain.exists():
                seen.append(plain.stat().st_size)
            time.sleep(0.001)
    assert seen and set(seen) == {len(data)}, f"extracted file seen at sizes {sorted(set(seen))[:5]}"
    assert all(gzip.decompress(c.result()) == data for c in copies)
    assert not list((tmp_path / "b").rglob("*.part"))


def test_new_host_keys_are_recorded_and_known_ones_enforced(tmp_path: Path) -> None:
    known = tmp_path / ".ssh" / "known_hosts"
    key = paramiko.Ed25519Key.from_private_key_file(str(_ed25519(tmp_path)))
    AcceptNew(known).missing_host_key(paramiko.SSHClient(), "[10.0.0.5]:2222", key)
    assert known.read_text() == f"[10.0.0.5]:2222 ssh-ed25519 {key.get_base64()}\n"
    assert oct(known.parent.stat().st_mode & 0o777) == "0o700"
    reloaded = paramiko.HostKeys(str(known))
    assert reloaded.check("[10.0.0.5]:2222", key)
    other = paramiko.Ed25519Key.from_private_key_file(str(_ed25519(tmp_path, "other")))
    assert not reloaded.check("[10.0.0.5]:2222", other)  # a changed key is refused on the next connection


def _ed25519(tmp_path: Path, name: str = "key") -> Path:
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path
