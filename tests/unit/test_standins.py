"""The lab's Kubernetes stand-ins, built and run locally on 127.0.0.1 against a real etcd with mutual TLS."""

from __future__ import annotations

import base64
import datetime
import http.client
import importlib.util
import ipaddress
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

STANDINS = Path(__file__).parents[1] / "lab" / "standins"
ETCD = "/usr/bin/etcd"
VERSION = "v1.35.0"
# Small flag lists of our own: the tests must not depend on the reference data.
FLAGS = {
    "kube-apiserver": [
        "bind-address", "client-ca-file", "encryption-provider-config", "etcd-cafile", "etcd-certfile",
        "etcd-keyfile", "etcd-servers", "proxy-client-cert-file", "proxy-client-key-file",
        "requestheader-client-ca-file", "secure-port", "service-account-issuer", "service-account-key-file",
        "service-account-signing-key-file", "tls-cert-file", "tls-private-key-file", "v",
    ],
    "kube-controller-manager": ["bind-address", "kubeconfig", "leader-elect", "secure-port", "v"],
    "kube-scheduler": ["bind-address", "config", "leader-elect", "secure-port", "v"],
    "kubelet": ["config", "kubeconfig", "v"],
    "kube-proxy": ["config", "hostname-override", "v"],
    "kubectl": [],
}

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not (Path(ETCD).exists() and shutil.which("openssl")), reason="needs etcd, openssl"),
]


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"standins_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


build = load(STANDINS / "build.py")
runtime = load(STANDINS / "standin.py")


# --- PKI ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path
    cert_obj: x509.Certificate
    key_obj: ec.EllipticCurvePrivateKey

    def pem(self) -> tuple[bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes()


def issue(out: Path, name: str, issuer: Pair | None = None, *, ca: bool = False, server: bool = False,
          client: bool = False) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert_obj.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)  # certs, CRLs
        builder = builder.add_extension(usage, critical=True)
    else:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server:
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(issuer.key_obj if issuer else key, hashes.SHA256())
    pair = Pair(out / f"{name}.crt", out / f"{name}.key", cert, key)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pair.key.chmod(0o600)
    return pair


@dataclass(frozen=True)
class PKI:
    dir: Path
    kube_ca: Pair
    etcd_ca: Pair
    front_proxy_ca: Pair
    other_ca: Pair
    apiserver: Pair
    etcd_server: Pair
    etcd_client: Pair
    etcd_client_wrong_ca: Pair
    front_proxy_client: Pair
    admin: Pair
    kubelet: Pair
    service_account: Pair
    other_service_account: Pair

    def public(self, pair: Pair) -> Path:
        path = pair.key.with_suffix(".pub")
        path.write_bytes(pair.key_obj.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    out = tmp_path_factory.mktemp("pki")
    kube_ca, etcd_ca = issue(out, "kubernetes-ca", ca=True), issue(out, "etcd-ca", ca=True)
    front_proxy_ca, other_ca = issue(out, "front-proxy-ca", ca=True), issue(out, "other-ca", ca=True)
    return PKI(
        out, kube_ca, etcd_ca, front_proxy_ca, other_ca,
        apiserver=issue(out, "kube-apiserver", kube_ca, server=True),
        etcd_server=issue(out, "etcd-server", etcd_ca, server=True, client=True),
        etcd_client=issue(out, "apiserver-etcd-client", etcd_ca, client=True),
        etcd_client_wrong_ca=issue(out, "etcd-client-from-kube-ca", kube_ca, client=True),
        front_proxy_client=issue(out, "front-proxy-client", front_proxy_ca, client=True),
        admin=issue(out, "admin", kube_ca, client=True),
        kubelet=issue(out, "kubelet", kube_ca, server=True),
        service_account=issue(out, "sa", kube_ca),
        other_service_account=issue(out, "other-sa", kube_ca),
    )


# --- processes ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bin")
    for name, flags in FLAGS.items():
        (out / name).write_bytes(build.build_standin(name, VERSION, flags))
    return out


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)


@pytest.fixture
def spawn(bin_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(name: str, *args: str) -> Process:
        log = tmp_path / f"{name}-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, str(bin_dir / name), *args], stdout=out, stderr=out)
        started.append(Process(proc, log))
        return started[-1]

    yield start
    for process in started:
        process.stop()


def run_once(bin_dir: Path, name: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(bin_dir / name), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@dataclass
class Etcd:
    url: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_etcd(pki: PKI, data: Path) -> Etcd:
    client, peer = free_port(), free_port()
    url = f"https://127.0.0.1:{client}"
    args = [
        ETCD, "--name", "standin-test", "--data-dir", str(data / "etcd"),
        "--listen-client-urls", url, "--advertise-client-urls", url,
        "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"standin-test=http://127.0.0.1:{peer}",
        "--cert-file", str(pki.etcd_server.cert), "--key-file", str(pki.etcd_server.key),
        "--client-cert-auth", "--trusted-ca-file", str(pki.etcd_ca.cert),
    ]
    with (data / "etcd.log").open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log)
    etcd = Etcd(url, proc)

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", client)) == 0

    wait_for(listening, what="etcd to listen")
    return etcd


@pytest.fixture(scope="module")
def etcd(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    server = start_etcd(pki, tmp_path_factory.mktemp("etcd"))
    yield server
    server.stop()


# --- clients ------------------------------------------------------------------------------------------------


def get(port: int, path: str, ca: Path | None, client: Pair | None = None) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if ca is None:  # a self-signed serving certificate: nothing to verify it against
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if client:
        ctx.load_cert_chain(client.cert, client.key)
    return fetch(http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5), path)


def get_plain(port: int, path: str) -> tuple[int, str]:
    return fetch(http.client.HTTPConnection("127.0.0.1", port, timeout=5), path)


def fetch(conn: http.client.HTTPConnection, path: str) -> tuple[int, str]:
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def write_kubeconfig(path: Path, server: str, ca: Path, user: Pair, embed: bool = True) -> Path:
    def data(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    cluster = {"server": server, **({"certificate-authority-data": data(ca)} if embed
                                    else {"certificate-authority": str(ca)})}
    creds = ({"client-certificate-data": data(user.cert), "client-key-data": data(user.key)} if embed
             else {"client-certificate": str(user.cert), "client-key": str(user.key)})
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{"name": "lab", "cluster": cluster}],
        "users": [{"name": "me", "user": creds}],
        "contexts": [{"name": "default", "context": {"cluster": "lab", "user": "me"}}],
    }))
    return path


def encryption_config(path: Path, key_bytes: int) -> Path:
    secret = base64.b64encode(b"k" * key_bytes).decode()
    providers = [{"aescbc": {"keys": [{"name": "key1", "secret": secret}]}}, {"identity": {}}]
    path.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": providers}],
    }))
    return path


def apiserver_args(pki: PKI, etcd_url: str, port: int, **overrides: object) -> list[str]:
    flags: dict[str, object] = {
        "bind-address": "127.0.0.1", "secure-port": port, "etcd-servers": etcd_url,
        "etcd-cafile": pki.etcd_ca.cert,
        "etcd-certfile": pki.etcd_client.cert, "etcd-keyfile": pki.etcd_client.key,
        "tls-cert-file": pki.apiserver.cert, "tls-private-key-file": pki.apiserver.key,
        "client-ca-file": pki.kube_ca.cert, "requestheader-client-ca-file": pki.front_proxy_ca.cert,
        "proxy-client-cert-file": pki.front_proxy_client.cert,
        "proxy-client-key-file": pki.front_proxy_client.key,
        "service-account-issuer": "https://kubernetes.default.svc",
        "service-account-key-file": pki.public(pki.service_account),
        "service-account-signing-key-file": pki.service_account.key,
        "encryption-provider-config": encryption_config(pki.dir / "encryption.yaml", 32),
    }
    flags.update(overrides)
    return [f"--{name}={value}" for name, value in flags.items()]


@dataclass(frozen=True)
class Apiserver:
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def start_apiserver(spawn: Callable[..., Process], pki: PKI, etcd_url: str) -> Apiserver:
    port = free_port()
    process = spawn("kube-apiserver", *apiserver_args(pki, etcd_url, port))
    wait_for(lambda: "serving HTTPS" in process.text() or process.proc.poll() is not None, what="apiserver")
    assert process.proc.poll() is None, process.text()
    return Apiserver(port, process)


@pytest.fixture
def apiserver(spawn: Callable[..., Process], pki: PKI, etcd: Etcd) -> Apiserver:
    return start_apiserver(spawn, pki, etcd.url)


# --- build and command line ---------------------------------------------------------------------------------


def test_build_is_deterministic_and_embeds_its_inputs() -> None:
    script = build.build_standin("kube-scheduler", "1.35.0", ["config", "v"])
    assert script == build.build_standin("kube-scheduler", "1.35.0", ["v", "config"])
    assert script.startswith(b"#!/usr/bin/python3\n")
    assert b"FLAGS = ['config', 'v']" in script and b"VERSION = 'v1.35.0'" in script
    assert script != build.build_standin("kube-scheduler", "1.35.0", ["config"])
    with pytest.raises(ValueError, match="without dashes"):
        build.build_standin("kube-scheduler", "1.35.0", ["--config"])


@pytest.mark.parametrize("name", list(FLAGS))
def test_version_says_it_is_a_standin(bin_dir: Path, name: str) -> None:
    args = ["version", "--client"] if name == "kubectl" else ["--version"]
    done = run_once(bin_dir, name, *args)
    assert done.returncode == 0, done.stderr
    assert f"{VERSION} (kubefab lab stand-in, not Kubernetes)" in done.stdout
    assert f"kubefab lab stand-in for {name} {VERSION}: not Kubernetes" in done.stderr.splitlines()[0]


def test_parses_the_command_line_like_pflag() -> None:
    valid = frozenset({"a", "b", "leader-elect", "oom-score-adj", "v", "etcd-servers"})
    args = runtime.parse_args(["--a=1", "--b", "x", "--leader-elect", "--oom-score-adj", "-999", "-v=2",
                               "--etcd_servers", "e", "--a", "3"], valid)
    assert args.all("a") == ("1", "3") and args.get("b") == "x" and args.flag("leader-elect")
    assert args.get("oom-score-adj") == "-999" and args.get("v") == "2" and args.get("etcd-servers") == "e"
    assert runtime.parse_args(["--leader-elect", "false"], valid).positional == ("false",)
    with pytest.raises(runtime.StandinError, match="unknown flag: --insecure-port"):
        runtime.parse_args(["--insecure-port=8080"], valid)
    with pytest.raises(runtime.StandinError, match="not a boolean"):
        runtime.parse_args(["--leader-elect=maybe"], valid)


# Each case changes the flags of an otherwise valid command line; the stand-in must exit naming the problem.
STARTUP_FAILURES: dict[str, tuple[Callable[[PKI], dict[str, object]], list[str]]] = {
    "unknown flag": (lambda p: {"insecure-port": 8080}, ["unknown flag: --insecure-port"]),
    "missing file": (lambda p: {"client-ca-file": "/nonexistent/ca.crt"},
                     ["--client-ca-file", "/nonexistent/ca.crt", "no such file"]),
    "key not matching cert": (lambda p: {"tls-private-key-file": p.admin.key}, ["does not match"]),
    "proxy client cert from the wrong CA": (
        lambda p: {"proxy-client-cert-file": p.admin.cert, "proxy-client-key-file": p.admin.key},
        ["--proxy-client-cert-file", "does not chain to", "front-proxy-ca.crt"]),
    "service-account keys not a pair": (
        lambda p: {"service-account-key-file": p.public(p.other_service_account)}, ["would not verify"]),
    "encryption key of 10 bytes": (
        lambda p: {"encryption-provider-config": encryption_config(p.dir / "short.yaml", 10)},
        ["aescbc.keys[0].secret: decodes to 10 bytes"]),
}


@pytest.mark.parametrize("case", list(STARTUP_FAILURES))
def test_apiserver_refuses_wiring_mistakes(bin_dir: Path, pki: PKI, case: str) -> None:
    overrides, expected = STARTUP_FAILURES[case]
    args = apiserver_args(pki, "https://127.0.0.1:1", free_port(), **overrides(pki))
    done = run_once(bin_dir, "kube-apiserver", *args, timeout=10)
    assert done.returncode != 0
    for text in expected:
        assert text in done.stderr


# --- kube-apiserver against a real etcd ---------------------------------------------------------------------


def test_apiserver_serves_readyz_only_to_trusted_client_certs(apiserver: Apiserver, pki: PKI) -> None:
    assert get(apiserver.port, "/readyz", pki.kube_ca.cert, pki.admin) == (200, "ok")
    status, body = get(apiserver.port, "/version", pki.kube_ca.cert, pki.admin)
    assert status == 200 and json.loads(body)["gitVersion"] == VERSION
    with pytest.raises(OSError):
        get(apiserver.port, "/readyz", pki.kube_ca.cert)
    with pytest.raises(OSError):
        get(apiserver.port, "/readyz", pki.kube_ca.cert, pki.etcd_client)  # signed by the etcd CA
    wait_for(lambda: "TLS handshake error" in apiserver.process.text(), what="handshake errors logged")
    assert "wrote and read back /registry/kubefab-standin/" in apiserver.process.text()


def test_apiserver_exits_when_etcd_rejects_its_client_cert(bin_dir: Path, pki: PKI, etcd: Etcd) -> None:
    args = apiserver_args(pki, etcd.url, free_port(), **{"etcd-certfile": pki.etcd_client_wrong_ca.cert,
                                                          "etcd-keyfile": pki.etcd_client_wrong_ca.key})
    done = run_once(bin_dir, "kube-apiserver", *args, timeout=20)
    assert done.returncode != 0
    assert f"etcd: {etcd.url}/v3/kv/put: TLS handshake failed" in done.stderr


def test_readyz_fails_while_etcd_is_down_and_sigterm_stops_cleanly(
        spawn: Callable[..., Process], pki: PKI, tmp_path: Path) -> None:
    etcd = start_etcd(pki, tmp_path)
    try:
        apiserver = start_apiserver(spawn, pki, etcd.url)
        assert get(apiserver.port, "/healthz", pki.kube_ca.cert, pki.admin) == (200, "ok")
    finally:
        etcd.stop()
    wait_for(lambda: get(apiserver.port, "/readyz", pki.kube_ca.cert, pki.admin)[0] == 500, timeout=10,
             what="/readyz to turn 500")
    assert get(apiserver.port, "/livez", pki.kube_ca.cert, pki.admin)[0] == 500
    assert f"etcd {etcd.url} failed" in apiserver.process.text()
    assert apiserver.process.stop() == 0


# --- clients of the apiserver -------------------------------------------------------------------------------


def client_args(name: str, kubeconfig: Path, port: int, tmp_path: Path) -> list[str]:
    if name == "kube-scheduler":  # the kubeconfig through KubeSchedulerConfiguration, as kubefab renders it
        config = tmp_path / "scheduler.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)}, "leaderElection": {"leaderElect": True},
        }))
        return [f"--config={config}", "--bind-address=127.0.0.1", f"--secure-port={port}"]
    return [f"--kubeconfig={kubeconfig}", "--bind-address=127.0.0.1", f"--secure-port={port}",
            "--leader-elect"]


@pytest.mark.parametrize("name", ["kube-scheduler", "kube-controller-manager"])
def test_control_plane_client_runs_with_a_good_kubeconfig(
        spawn: Callable[..., Process], apiserver: Apiserver, pki: PKI, tmp_path: Path, name: str) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "good.kubeconfig", apiserver.url, pki.kube_ca.cert, pki.admin)
    port = free_port()
    process = spawn(name, *client_args(name, kubeconfig, port, tmp_path))
    wait_for(lambda: "is ready" in process.text() or process.proc.poll() is not None, what=f"{name} ready")
    assert process.proc.poll() is None, process.text()
    assert get(port, "/healthz", None) == (200, "ok")  # self-signed serving certificate
    assert process.stop() == 0


@pytest.mark.parametrize("name", ["kube-scheduler", "kube-controller-manager"])
def test_control_plane_client_exits_when_the_kubeconfig_ca_is_wrong(
        bin_dir: Path, apiserver: Apiserver, pki: PKI, tmp_path: Path, name: str) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "bad.kubeconfig", apiserver.url, pki.other_ca.cert, pki.admin)
    done = run_once(bin_dir, name, *client_args(name, kubeconfig, free_port(), tmp_path), timeout=20)
    assert done.returncode != 0
    assert "server certificate not trusted" in done.stderr and str(kubeconfig) in done.stderr


def kubelet_config(tmp_path: Path, pki: PKI, port: int, healthz_port: int, **extra: object) -> Path:
    path = tmp_path / "kubelet.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": "127.0.0.1", "port": port, "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
        "tlsCertFile": str(pki.kubelet.cert), "tlsPrivateKeyFile": str(pki.kubelet.key),
        "authentication": {"anonymous": {"enabled": False}, "x509": {"clientCAFile": str(pki.kube_ca.cert)}},
        "containerRuntimeEndpoint": f"unix://{tmp_path}/containerd.sock", **extra,
    }))
    return path


def test_kubelet_serves_its_port_only_to_client_certs(
        spawn: Callable[..., Process], apiserver: Apiserver, pki: PKI, tmp_path: Path) -> None:
    port, healthz = free_port(), free_port()
    kubeconfig = write_kubeconfig(tmp_path / "kubelet.kubeconfig", apiserver.url, pki.kube_ca.cert, pki.admin,
                                  embed=False)
    process = spawn("kubelet", f"--config={kubelet_config(tmp_path, pki, port, healthz)}",
                    f"--kubeconfig={kubeconfig}")
    wait_for(lambda: "is ready" in process.text() or process.proc.poll() is not None, what="kubelet ready")
    assert process.proc.poll() is None, process.text()
    assert get(port, "/healthz", pki.kube_ca.cert, pki.admin) == (200, "ok")
    with pytest.raises(OSError):
        get(port, "/healthz", pki.kube_ca.cert)
    assert get_plain(healthz, "/healthz") == (200, "ok")
    assert "containerd.sock does not exist" in process.text()


def test_kubelet_config_with_an_unknown_field_is_refused(bin_dir: Path, pki: PKI, tmp_path: Path) -> None:
    config = kubelet_config(tmp_path, pki, free_port(), free_port(), tlsCertFiles="/typo")
    done = run_once(bin_dir, "kubelet", f"--config={config}")
    assert done.returncode != 0 and "unknown field(s) in KubeletConfiguration: tlsCertFiles" in done.stderr


def test_config_fields_are_a_build_input(pki: PKI, tmp_path: Path) -> None:
    script = tmp_path / "kubelet"
    script.write_bytes(build.build_standin("kubelet", VERSION, ["config"],
                                           config_fields={"KubeletConfiguration": ["port"]}))
    config = kubelet_config(tmp_path, pki, free_port(), free_port())
    done = subprocess.run([sys.executable, str(script), f"--config={config}"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode != 0 and "unknown field(s) in KubeletConfiguration: address" in done.stderr


def test_kube_proxy_serves_healthz_once_the_apiserver_answers(
        spawn: Callable[..., Process], apiserver: Apiserver, pki: PKI, tmp_path: Path) -> None:
    healthz, metrics = free_port(), free_port()
    kubeconfig = write_kubeconfig(tmp_path / "proxy.kubeconfig", apiserver.url, pki.kube_ca.cert, pki.admin)
    config = tmp_path / "proxy.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "mode": "iptables", "clientConnection": {"kubeconfig": str(kubeconfig)},
        "healthzBindAddress": f"127.0.0.1:{healthz}", "metricsBindAddress": f"127.0.0.1:{metrics}",
    }))
    process = spawn("kube-proxy", f"--config={config}")
    wait_for(lambda: "is ready" in process.text() or process.proc.poll() is not None, what="kube-proxy ready")
    status, body = get_plain(healthz, "/healthz")
    assert status == 200 and json.loads(body)["nodeEligible"] is True
    assert get_plain(metrics, "/metrics")[0] == 200


def test_kubectl_performs_raw_gets_and_nothing_else(
        bin_dir: Path, apiserver: Apiserver, pki: PKI, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "admin.kubeconfig", apiserver.url, pki.kube_ca.cert, pki.admin)
    done = run_once(bin_dir, "kubectl", "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz")
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
    done = run_once(bin_dir, "kubectl", f"--kubeconfig={kubeconfig}", "version")
    assert done.returncode == 0 and f"Server Version: {VERSION}" in done.stdout
    done = run_once(bin_dir, "kubectl", "apply", "-f", "x.yaml")
    assert done.returncode == 1
    assert "kubectl stand-in: 'apply' is not implemented (lab stand-in, not Kubernetes)" in done.stderr
