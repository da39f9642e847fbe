"""The shell kubefab runs on hosts, run here with sh: the facts command, the state and install scripts;
and host keys made by ssh-keygen."""

from __future__ import annotations

import getpass
import grp
import gzip
import hashlib
import os
import subprocess
from pathlib import Path

import paramiko
import pytest

from kubefab.playbooks import facts
from kubefab.playbooks.apply import _Upload, install_script, parse_state, state_script
from kubefab.playbooks.plan import Binary, Block, Directory, File, Plan, Step
from kubefab.playbooks.remote import AcceptNew

pytestmark = pytest.mark.tools


def test_facts_command_runs_on_this_machine() -> None:
    """The one-round-trip command is plain sh and parses on a real system."""
    out = subprocess.run(["sh", "-c", facts.COMMAND], capture_output=True, text=True, timeout=30)
    f = facts.parse(out.stdout)
    assert f.os_id != "unknown" and f.arch in ("amd64", "arm64") and f.time > 0


def test_state_script_and_parser_round_trip(tmp_path: Path) -> None:
    present = tmp_path / "present.conf"
    present.write_text("hello\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    plan = Plan(
        "h",
        "test",
        files=(File(str(present), b"hello\n"), File(str(tmp_path / "absent"), b"x")),
        blocks=(Block(str(hosts), "kubefab t", "10.0.0.1 a"),),
        directories=(Directory(str(tmp_path)),),
        users=("root", "no-such-user-kubefab"),
        steps=(Step("true step", "true", "false"), Step("false step", "false", "true")),
    )
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
    upload = _Upload(
        str(target), 0o755, getpass.getuser(), grp.getgrgid(os.getgid()).gr_name, (), gzipped=True, sha256=recorded
    )
    subprocess.run(["sh", "-c", install_script([(upload, str(sent))], record=str(record))], check=True, timeout=30)
    assert target.read_bytes() == b"the etcd binary"
    plan = Plan("h", "t", binaries=(Binary("x", None, str(target)),))

    def reported() -> str:
        out = subprocess.run(
            ["sh", "-c", state_script(plan, record=str(record))], capture_output=True, text=True, timeout=30, check=True
        ).stdout
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
