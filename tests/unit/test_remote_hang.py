"""A host that stops answering in the middle of a command fails the step instead of hanging the run.

The SSH server here is paramiko's server side on loopback, standing in (a test double) for a host whose link
drops after it accepted a session channel and before it answered the exec request: that moment cannot be
timed on a real host, and it is the one wait paramiko has no limit for."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import paramiko
import pytest

from kubefab.playbooks import remote as remote_mod
from kubefab.playbooks.remote import Remote, StepFailed, _connection


class SilentOnExec(paramiko.ServerInterface):
    """Accepts any login and any session, then never answers an exec request."""

    def __init__(self, release: threading.Event, asked: threading.Event) -> None:
        self.release, self.asked = release, asked

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.asked.set()
        self.release.wait(60)  # blocks the server's transport thread: no reply, no data, as a dead link
        return False


@pytest.fixture
def silent_server(tmp_path: Path):
    host_key = paramiko.RSAKey.generate(2048)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    release, asked = threading.Event(), threading.Event()
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        sock, _ = listener.accept()
        transport = paramiko.Transport(sock)
        transport.add_server_key(host_key)
        transports.append(transport)
        transport.start_server(server=SilentOnExec(release, asked))

    threading.Thread(target=serve, daemon=True).start()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    login = tmp_path / "id_rsa"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(login))
    yield port, known, login, asked
    release.set()
    for t in transports:
        t.close()
    listener.close()


def test_a_host_silent_after_the_session_opened_fails_the_step(
    silent_server: tuple[int, Path, Path, threading.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, known, login, asked = silent_server
    monkeypatch.setattr(remote_mod, "WATCHDOG_GRACE", 1)
    remote = Remote.__new__(Remote)
    remote.name, remote.sudo, remote.log, remote.timeout = "silent", False, None, 2
    remote._lock = threading.Lock()
    remote.conn = _connection("127.0.0.1", "kubefab", port, login, known, connect_timeout=5, timeout=2)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            remote.run("probe", "true")
            outcome.append(None)
        except BaseException as exc:  # whatever it raised is what the assertion shows
            outcome.append(exc)

    start = time.monotonic()
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "Remote.run still waiting 30 s after a 2 s timeout"
    (raised,) = outcome
    assert isinstance(raised, StepFailed), raised
    assert "silent: probe failed" in str(raised) and "cannot reach the host" in str(raised)
    assert time.monotonic() - start < 15
    assert asked.is_set(), "the command never reached the exec request, so this did not test that wait"
