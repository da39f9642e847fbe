"""Downloads against a real HTTP server and a real forward proxy on loopback: parallel, resumed, reported, and
through HTTP_PROXY (a forward request) or HTTPS_PROXY (a CONNECT tunnel, TLS verified end to end) to a mirror
name only the proxy knows."""

from __future__ import annotations

import copy
import datetime as dt
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from kubefab.pki.certs import Authority, Request, issue, new_ca
from kubefab.pki.keys import key_pem, new_key
from kubefab.playbooks import bundle, components, fetch
from kubefab.playbooks.inventory import load
from kubefab.playbooks.versions import stack
from tests.conftest import EXAMPLE


class Files(ThreadingHTTPServer):
    """Serves `content` by path; honours Range unless told not to; can cut a body short; counts requests."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.content: dict[str, bytes] = {}
        self.ranges = True
        self.cut_at: int | None = None  # send only this many bytes of a body, then close
        self.delay = 0.0
        self.seen: list[tuple[str, str]] = []  # (request target, Range header)
        self.active = self.most = 0
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Files

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        s = self.server
        with s.lock:
            s.seen.append((self.path, self.headers.get("Range", "")))
            s.active += 1
            s.most = max(s.most, s.active)
        try:
            time.sleep(s.delay)
            key = self.path.split("://", 1)[-1].split("/", 1)[-1]  # a proxy gets the absolute URL
            body = s.content.get("/" + key)
            if body is None:
                self.send_error(404)
                return
            start = 0
            wanted = self.headers.get("Range", "")
            if s.ranges and wanted.startswith("bytes="):
                start = int(wanted[6:].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            out = body[start:]
            self.wfile.write(out if s.cut_at is None else out[: s.cut_at])
        finally:
            with s.lock:
                s.active -= 1


@pytest.fixture
def server() -> Iterator[Files]:
    srv = Files()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_files_are_fetched_several_at_once_and_complete(server: Files, tmp_path: Path) -> None:
    server.delay = 0.3
    jobs = []
    for i in range(8):
        server.content[f"/f{i}"] = bytes([i]) * 1000
        jobs.append((f"{server.base}/f{i}", tmp_path / f"f{i}"))
    # One worker: the server never sees two requests at once, so its count measures what fetch_all overlaps.
    fetch.fetch_all(jobs[:2], lambda _: None, workers=1)
    assert server.most == 1
    for _, path in jobs[:2]:
        path.unlink()
    server.most = 0
    lines: list[str] = []
    results = fetch.fetch_all(jobs, lines.append)
    assert [r.error for r in results] == [None] * 8
    assert all((tmp_path / f"f{i}").read_bytes() == bytes([i]) * 1000 for i in range(8))
    assert server.most == fetch.WORKERS  # each request is held 0.3 s: all four workers are in flight together
    assert sum(line.startswith("fetched f") for line in lines) == 8
    assert not list(tmp_path.glob("*.part"))


def test_a_part_is_resumed_with_a_range_request(server: Files, tmp_path: Path) -> None:
    body = bytes(range(256)) * 100
    server.content["/big"] = body
    fetch.part_of(tmp_path / "big").write_bytes(body[:10000])
    lines: list[str] = []
    result = fetch.fetch(f"{server.base}/big", tmp_path / "big", lines.append)
    assert result.error is None and result.resumed_from == 10000
    assert (tmp_path / "big").read_bytes() == body
    assert server.seen == [("/big", "bytes=10000-")]
    assert "resuming at" in lines[0]


def test_a_server_without_ranges_sends_the_whole_file_again(server: Files, tmp_path: Path) -> None:
    body = b"x" * 5000 + b"y" * 5000
    server.content["/f"], server.ranges = body, False
    fetch.part_of(tmp_path / "f").write_bytes(body[:4000])
    result = fetch.fetch(f"{server.base}/f", tmp_path / "f", lambda _: None)
    assert result.error is None and result.resumed_from == 0
    assert (tmp_path / "f").read_bytes() == body  # restarted, not appended to the part


def test_a_cut_connection_keeps_the_part_and_the_next_run_finishes(server: Files, tmp_path: Path) -> None:
    body = bytes(range(256)) * 400
    server.content["/f"], server.cut_at = body, 30000
    first = fetch.fetch(f"{server.base}/f", tmp_path / "f", lambda _: None)
    assert first.error is not None and first.network, first
    assert not (tmp_path / "f").exists() and fetch.part_of(tmp_path / "f").stat().st_size == 30000
    server.cut_at = None
    second = fetch.fetch(f"{server.base}/f", tmp_path / "f", lambda _: None)
    assert second.error is None and second.resumed_from == 30000
    assert (tmp_path / "f").read_bytes() == body


def test_progress_lines_for_a_large_file(server: Files, tmp_path: Path) -> None:
    server.content["/large"] = b"\0" * (fetch.PROGRESS_FROM + (1 << 20))
    lines: list[str] = []
    fetch.fetch(f"{server.base}/large", tmp_path / "large", lines.append)
    assert [line.split(": ")[1].split("%")[0] for line in lines if "%" in line] == ["25", "50", "75"]


def test_http_error_is_the_servers_answer_not_the_network(server: Files, tmp_path: Path) -> None:
    result = fetch.fetch(f"{server.base}/absent", tmp_path / "absent", lambda _: None)
    assert result.error == "HTTP 404 Not Found" and not result.network


def test_http_proxy_from_the_environment_reaches_a_mirror_only_it_knows(
    server: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mirror.invalid cannot resolve (RFC 6761): the file can only have come through the proxy."""
    server.content["/kube/f"] = b"through the proxy"
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.base)
    (result,) = fetch.fetch_all([("http://mirror.invalid/kube/f", tmp_path / "f")], lambda _: None)
    assert result.error is None, result
    assert (tmp_path / "f").read_bytes() == b"through the proxy"
    assert server.seen[0][0] == "http://mirror.invalid/kube/f"  # a forward proxy's request: the absolute URL


def test_bundle_with_nothing_reachable_is_one_summary_and_no_manifest(
    server: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    closed = server.base
    server.shutdown()
    server.server_close()  # nothing listens there now: every fetch fails on the way
    data = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text())) | {"bundle": str(tmp_path / "bundle")}
    (tmp_path / "i.yaml").write_text(yaml.safe_dump(data))
    c = load(tmp_path / "i.yaml")
    s = stack(c.kubernetes_version)
    problems = bundle.download(c, components.releases(c, s, "amd64"), s, "amd64", lambda _: None, mirror=closed)
    summary, images = problems
    assert summary.startswith("no file could be fetched (7 tried):"), summary
    assert summary.count(f"  {closed}/") == 7 and "set HTTPS_PROXY" in summary and "--mirror URL" in summary
    assert f"the mirror {closed}" in summary
    assert images.startswith("images: not tried")
    assert not (tmp_path / "bundle" / bundle.MANIFEST).exists()


class Tunnel(socketserver.ThreadingTCPServer):
    """A CONNECT proxy on loopback that knows one name: `host` is `target` (a port on 127.0.0.1)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, target: int) -> None:
        super().__init__(("127.0.0.1", 0), TunnelHandler)
        self.host, self.target = host, target
        self.asked: list[str] = []


class TunnelHandler(socketserver.BaseRequestHandler):
    server: Tunnel

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode()
        self.server.asked.append(line)
        method, where, _ = line.split(" ", 2)
        if method != "CONNECT" or where.rsplit(":", 1)[0] != self.server.host:
            self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            return
        upstream = socket.create_connection(("127.0.0.1", self.server.target))
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                b.close()

        threading.Thread(target=pipe, args=(upstream, self.request), daemon=True).start()
        pipe(self.request, upstream)


def test_https_proxy_tunnels_to_a_mirror_only_it_knows_with_tls_verified(
    server: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file server speaks TLS with a certificate for mirror.invalid from a CA this test makes; the client
    trusts that CA only through SSL_CERT_FILE and reaches the name only through the proxy's CONNECT tunnel."""
    now = dt.datetime.now(dt.UTC)
    ca_key, leaf_key = new_key("ecdsa-p256"), new_key("ecdsa-p256")
    ca = Authority(new_ca("kubefab test mirror CA", ca_key, 1, now), ca_key)
    leaf = issue(ca, Request("mirror.invalid", dns_names=("mirror.invalid",), usages=("server",)), leaf_key, 1, now)
    (tmp_path / "ca.crt").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key_pem(leaf_key))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.content["/kube/f"] = b"through the tunnel"
    tunnel = Tunnel("mirror.invalid", server.server_address[1])
    threading.Thread(target=tunnel.serve_forever, daemon=True).start()
    try:
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{tunnel.server_address[1]}")
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.crt"))
        (result,) = fetch.fetch_all([("https://mirror.invalid/kube/f", tmp_path / "f")], lambda _: None)
        assert result.error is None, result
        assert (tmp_path / "f").read_bytes() == b"through the tunnel"
        assert [a.rsplit(" ", 1)[0] for a in tunnel.asked] == ["CONNECT mirror.invalid:443"]
        assert server.seen[0][0] == "/kube/f"  # inside the tunnel: an origin request, not a proxy's

        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "tls.key"))  # a file holding no CA: no trust
        (refused,) = fetch.fetch_all([("https://mirror.invalid/kube/f", tmp_path / "g")], lambda _: None)
        assert refused.error is not None and "CERTIFICATE_VERIFY_FAILED" in refused.error, refused
        assert not (tmp_path / "g").exists()
    finally:
        tunnel.shutdown()
        tunnel.server_close()
