"""kubefab lab stand-in: a test double for a Kubernetes binary, never Kubernetes itself.

build.py embeds this module's source in one script per component (kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet, kube-proxy, kubectl) with the component's name, version, valid flags and config
fields. A stand-in fails where the real binary would fail on a wiring mistake (unknown flag, missing file,
key not matching its certificate, peer not trusted) and otherwise serves just enough for health checks.
Stdlib and PyYAML only: it runs on bare lab hosts.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import platform
import re
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from hashlib import sha256
from http import client as http_client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import yaml

log = logging.getLogger("standin")

POLL_SECONDS = 2.0  # how often clients call the apiserver's /readyz
ETCD_STARTUP_SECONDS = 60.0  # etcd may come up slightly after the apiserver
ETCD_TIMEOUT = 2.0
HTTP_TIMEOUT = 5.0

# Boolean flags (pflag NoOptDefVal): `--flag word` leaves `word` positional, as the real parser does. Other
# flags written bare before another flag are taken as booleans too, since only names are known.
BOOL_FLAGS = frozenset({
    "add-dir-header", "allocate-node-cidrs", "allow-privileged", "alsologtostderr", "anonymous-auth",
    "authentication-skip-lookup", "authentication-tolerate-lookup-failure", "bind-address-hard-fail",
    "cgroups-per-qos", "cleanup", "client", "configure-cloud-routes", "contention-profiling",
    "enable-aggregator-routing", "enable-bootstrap-token-auth", "enable-controller-attach-detach",
    "enable-debugging-handlers", "enable-dynamic-provisioning", "enable-garbage-collector",
    "enable-hostpath-provisioner", "enable-logs-handler", "enable-priority-and-fairness", "enable-server",
    "fail-swap-on", "help", "init-only", "leader-elect", "logtostderr", "make-iptables-util-chains",
    "masquerade-all", "one-output", "permit-address-sharing", "permit-port-sharing", "profiling",
    "protect-kernel-defaults", "register-node", "register-schedulable", "rotate-certificates",
    "rotate-server-certificates", "run-once", "seccomp-default", "serialize-image-pulls",
    "service-account-extend-token-expiration", "service-account-lookup", "skip-headers", "skip-log-headers",
    "use-service-account-credentials", "version", "watch-cache",
})
TRUE_WORDS = frozenset({"1", "t", "T", "TRUE", "true", "True"})
FALSE_WORDS = frozenset({"0", "f", "F", "FALSE", "false", "False"})
SHORTHANDS = {"v": "v", "h": "help"}
BUILTIN_FLAGS = frozenset({"help", "version"})  # cobra and verflag add these to every component
KUBECTL_FLAGS = frozenset({"client", "context", "kubeconfig", "raw", "server", "v"})  # what the kubectl stand-in does
KUBECTL_COMMANDS = ("version", "get")

# Flags naming files the component reads at startup (files it writes, like --audit-log-path, are not here).
FILE_FLAGS = frozenset({
    "admission-control-config-file", "audit-policy-file", "audit-webhook-config-file",
    "authentication-config", "authentication-kubeconfig", "authentication-token-webhook-config-file",
    "authorization-config", "authorization-kubeconfig", "authorization-webhook-config-file", "client-ca-file",
    "cluster-signing-cert-file", "cluster-signing-key-file",
    "cluster-signing-kube-apiserver-client-cert-file",
    "cluster-signing-kube-apiserver-client-key-file", "cluster-signing-kubelet-client-cert-file",
    "cluster-signing-kubelet-client-key-file", "cluster-signing-kubelet-serving-cert-file",
    "cluster-signing-kubelet-serving-key-file", "cluster-signing-legacy-unknown-cert-file",
    "cluster-signing-legacy-unknown-key-file", "config", "egress-selector-config-file",
    "encryption-provider-config", "etcd-cafile", "etcd-certfile", "etcd-keyfile",
    "image-credential-provider-config", "kubeconfig", "kubelet-certificate-authority",
    "kubelet-client-certificate", "kubelet-client-key", "oidc-ca-file", "proxy-client-cert-file",
    "proxy-client-key-file", "requestheader-client-ca-file", "root-ca-file", "service-account-key-file",
    "service-account-private-key-file", "service-account-signing-key-file", "tls-cert-file",
    "tls-private-key-file", "token-auth-file", "tracing-config-file",
})
CA_FLAGS = frozenset({
    "client-ca-file", "etcd-cafile", "kubelet-certificate-authority", "oidc-ca-file",
    "requestheader-client-ca-file", "root-ca-file",
})
PRIVATE_KEY_FLAGS = frozenset({"service-account-private-key-file", "service-account-signing-key-file"})
CERT_KEY_PAIRS = (
    ("tls-cert-file", "tls-private-key-file"),
    ("etcd-certfile", "etcd-keyfile"),
    ("kubelet-client-certificate", "kubelet-client-key"),
    ("proxy-client-cert-file", "proxy-client-key-file"),
    ("cluster-signing-cert-file", "cluster-signing-key-file"),
    *(
        (f"cluster-signing-{signer}-cert-file", f"cluster-signing-{signer}-key-file")
        for signer in ("kube-apiserver-client", "kubelet-client", "kubelet-serving", "legacy-unknown")
    ),
)
# (certificate, CA it must chain to, openssl purpose): only where the binary itself can tell. The etcd client
# certificate is judged by etcd in the handshake; the kubelets' client CA is not knowable here.
CHAINS = (("proxy-client-cert-file", "requestheader-client-ca-file", "sslclient"),)

API_VERSIONS = {
    "KubeletConfiguration": ("kubelet.config.k8s.io/v1beta1",),
    "KubeProxyConfiguration": ("kubeproxy.config.k8s.io/v1alpha1",),
    "KubeSchedulerConfiguration": ("kubescheduler.config.k8s.io/v1",),
    "EncryptionConfiguration": ("apiserver.config.k8s.io/v1",),
    "Policy": ("audit.k8s.io/v1",),
    "Config": ("v1",),
}
CONFIG_KIND = {
    "kubelet": "KubeletConfiguration",
    "kube-proxy": "KubeProxyConfiguration",
    "kube-scheduler": "KubeSchedulerConfiguration",
}
ENCRYPTION_KEY_SIZES = {"aescbc": (16, 24, 32), "aesgcm": (16, 24, 32), "secretbox": (32,)}
ENCRYPTION_PROVIDERS = frozenset({"identity", "kms", *ENCRYPTION_KEY_SIZES})
AUDIT_LEVELS = frozenset({"None", "Metadata", "Request", "RequestResponse"})
PEM_BLOCK = re.compile(r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----.*?-----END (?P=label)-----", re.DOTALL)


class StandinError(Exception):
    """A failure the real binary would also exit on; the message names the flag, file or peer."""


class TLSFailure(StandinError):
    """A TLS verification or handshake failure: retrying will not fix it."""


# --- command line -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Args:
    values: Mapping[str, tuple[str, ...]]
    positional: tuple[str, ...]

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values[name][-1] if name in self.values else default

    def all(self, name: str) -> tuple[str, ...]:
        return self.values.get(name, ())

    def flag(self, name: str) -> bool:
        return name in self.values and self.values[name][-1] in TRUE_WORDS

    def integer(self, name: str, default: int) -> int:
        value = self.get(name)
        try:
            return default if value is None else int(value)
        except ValueError:
            raise StandinError(f'invalid argument "{value}" for "--{name}" flag: not an integer') from None


FLAG_LIKE = re.compile(r"--?[A-Za-z]")  # negative numbers are values, not flags


def parse_args(argv: list[str], valid: frozenset[str]) -> Args:
    """pflag's rules: --name=value, --name value, bare boolean --name, -v shorthand, `--` ends flags."""
    values: dict[str, list[str]] = {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            positional.extend(argv[i:])
            break
        if not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        name, has_value, value = word.lstrip("-").partition("=")
        if not word.startswith("--"):
            name, has_value, value = _shorthand(word, name, bool(has_value), value)
        name = name.replace("_", "-")  # Kubernetes normalizes word separators
        if name not in valid:
            raise StandinError(f"unknown flag: --{name}")
        if not has_value:
            # Only names are known: a flag followed by another flag (or nothing) is taken as a boolean.
            if name not in BOOL_FLAGS and i < len(argv) and not FLAG_LIKE.match(argv[i]):
                value, i = argv[i], i + 1
            else:
                value = "true"
        is_bool = value in TRUE_WORDS | FALSE_WORDS or (name, value) == ("version", "raw")
        if name in BOOL_FLAGS and not is_bool:
            raise StandinError(f'invalid argument "{value}" for "--{name}" flag: not a boolean')
        values.setdefault(name, []).append(value)
    return Args({k: tuple(v) for k, v in values.items()}, tuple(positional))


def _shorthand(word: str, name: str, has_value: bool, value: str) -> tuple[str, bool, str]:
    """-v 2, -v=2 and -v2 all mean --v=2."""
    letter, attached = name[:1], name[1:]
    if letter not in SHORTHANDS:
        raise StandinError(f"unknown shorthand flag: {letter!r} in {word}")
    return (SHORTHANDS[letter], True, attached) if attached else (SHORTHANDS[letter], has_value, value)


# --- files and certificates ---------------------------------------------------------------------------------


def openssl(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *argv], input=stdin, capture_output=True, timeout=30, check=False)


def require_file(where: str, path: str) -> None:
    if not Path(path).is_file():
        raise StandinError(f"{where} {path}: no such file")


def pem_blocks(path: str) -> list[tuple[str, str]]:
    return [(m["label"], m[0]) for m in PEM_BLOCK.finditer(Path(path).read_text(errors="replace"))]


def check_ca_bundle(where: str, path: str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError as e:
        raise StandinError(f"{where} {path}: no usable CA certificate ({e.reason or e})") from None


def load_pair(ctx: ssl.SSLContext, cert: str, key: str, where: str) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise StandinError(f"{where}: private key {key} does not match certificate {cert}") from None
        raise StandinError(f"{where}: unusable certificate {cert} / key {key} ({e.reason or e})") from None


def check_pair(args: Args, cert_flag: str, key_flag: str) -> None:
    if (cert_flag in args) != (key_flag in args):
        raise StandinError(f"--{cert_flag} and --{key_flag} must be given together")
    if cert_flag in args:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        load_pair(ctx, args.get(cert_flag), args.get(key_flag), f"--{cert_flag}/--{key_flag}")


def check_chain(where: str, cert: str, ca: str, purpose: str) -> None:
    """openssl verify with Go's semantics: every certificate in the CA file is a trust anchor."""
    blocks = [pem for label, pem in pem_blocks(cert) if label == "CERTIFICATE"]
    if not blocks:
        raise StandinError(f"{where}: {cert} holds no certificate")
    with tempfile.TemporaryDirectory() as scratch:
        chain = Path(scratch) / "chain.pem"  # intermediates after the leaf, as Go reads them
        chain.write_text("\n".join(blocks[1:]))
        untrusted = ["-untrusted", str(chain)] if len(blocks) > 1 else []
        done = openssl("verify", "-partial_chain", "-purpose", purpose, "-CAfile", ca, *untrusted,
                       stdin=blocks[0].encode())
    if done.returncode:
        reason = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()
        problem = next((line for line in reason if line.startswith("error")), " ".join(reason))
        raise StandinError(f"{where}: certificate {cert} does not chain to {ca}: {problem}")


def public_keys(where: str, path: str, private_only: bool = False) -> set[str]:
    """The public keys (normalised PEM) of the keys and certificates in a PEM file."""
    keys = set()
    for label, pem in pem_blocks(path):
        if label.endswith("PRIVATE KEY"):
            command: tuple[str, ...] = ("pkey", "-pubout")
        elif private_only:
            continue
        elif label == "CERTIFICATE":
            command = ("x509", "-pubkey", "-noout")
        elif label.endswith("PUBLIC KEY"):
            command = ("pkey", "-pubin", "-pubout")
        else:
            continue
        done = openssl(*command, stdin=pem.encode())
        if done.returncode:
            raise StandinError(f"{where} {path}: unreadable {label}: {done.stderr.decode().strip()}")
        keys.add(done.stdout.decode().strip())
    if not keys:
        wanted = "private key" if private_only else "key or certificate"
        raise StandinError(f"{where} {path}: no {wanted} found")
    return keys


def check_service_account_keys(args: Args) -> None:
    """Tokens signed with the signing key must verify with one of the --service-account-key-file keys."""
    for flag in sorted(PRIVATE_KEY_FLAGS & args.values.keys()):
        public_keys(f"--{flag}", args.get(flag), private_only=True)
    signing, verifying = args.get("service-account-signing-key-file"), args.all("service-account-key-file")
    if signing and verifying:
        accepted = set().union(*(public_keys("--service-account-key-file", path) for path in verifying))
        if not public_keys("--service-account-signing-key-file", signing, private_only=True) & accepted:
            raise StandinError(
                f"--service-account-signing-key-file {signing}: its public key is in none of "
                f"--service-account-key-file {', '.join(verifying)}: the tokens it signs would not verify"
            )


# --- configuration files ------------------------------------------------------------------------------------


def load_config(run: Run, where: str, path: str, kind: str) -> dict:
    """Read a config file strictly: right kind and apiVersion, no unknown top-level fields."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise StandinError(f"{where} {path}: no such file") from None
    except (OSError, yaml.YAMLError) as e:
        raise StandinError(f"{where} {path}: cannot read: {e}") from None
    if not isinstance(doc, dict):
        raise StandinError(f"{where} {path}: not a YAML mapping")
    if doc.get("kind") != kind:
        raise StandinError(f"{where} {path}: kind is {doc.get('kind')!r}, expected {kind}")
    if doc.get("apiVersion") not in API_VERSIONS[kind]:
        raise StandinError(
            f"{where} {path}: apiVersion {doc.get('apiVersion')!r} is not served for {kind} "
            f"(expected {' or '.join(API_VERSIONS[kind])})"
        )
    unknown = sorted(set(doc) - run.fields[kind])
    if unknown:
        raise StandinError(f"{where} {path}: unknown field(s) in {kind}: {', '.join(unknown)}")
    return doc


def check_encryption_config(run: Run, where: str, path: str) -> None:
    doc = load_config(run, where, path, "EncryptionConfiguration")
    entries = doc.get("resources") or []
    if not entries:
        raise StandinError(f"{where} {path}: resources: at least one entry is required")
    for i, entry in enumerate(entries):
        at = f"{where} {path}: resources[{i}]"
        if not entry.get("resources"):
            raise StandinError(f"{at}.resources: at least one resource is required")
        if not entry.get("providers"):
            raise StandinError(f"{at}.providers: at least one provider is required")
        for j, provider in enumerate(entry["providers"]):
            check_encryption_provider(f"{at}.providers[{j}]", provider)


def check_encryption_provider(at: str, provider: dict) -> None:
    if not isinstance(provider, dict) or len(provider) != 1:
        raise StandinError(f"{at}: exactly one provider per list element")
    (kind, spec), = provider.items()
    if kind not in ENCRYPTION_PROVIDERS:
        raise StandinError(f"{at}: unknown provider {kind!r}")
    if kind not in ENCRYPTION_KEY_SIZES:
        return
    keys = (spec or {}).get("keys") or []
    if not keys:
        raise StandinError(f"{at}.{kind}.keys: at least one key is required")
    for k, key in enumerate(keys):
        if not key.get("name"):
            raise StandinError(f"{at}.{kind}.keys[{k}].name: required")
        try:
            size = len(base64.b64decode(key.get("secret") or "", validate=True))
        except ValueError:
            raise StandinError(f"{at}.{kind}.keys[{k}].secret: not base64") from None
        if size not in ENCRYPTION_KEY_SIZES[kind]:
            raise StandinError(
                f"{at}.{kind}.keys[{k}].secret: decodes to {size} bytes, "
                f"expected one of {ENCRYPTION_KEY_SIZES[kind]}"
            )


def check_audit_policy(run: Run, where: str, path: str) -> None:
    rules = load_config(run, where, path, "Policy").get("rules") or []
    if not rules:
        raise StandinError(f"{where} {path}: policy has no rules")
    for i, rule in enumerate(rules):
        if rule.get("level") not in AUDIT_LEVELS:
            raise StandinError(
                f"{where} {path}: rules[{i}].level {rule.get('level')!r} is not one of {sorted(AUDIT_LEVELS)}"
            )


CONFIG_CHECKS: Mapping[str, Callable[[Run, str, str], None]] = {
    "encryption-provider-config": check_encryption_config,
    "audit-policy-file": check_audit_policy,
}


def component_config(run: Run, args: Args) -> dict:
    """The component's own --config file (KubeletConfiguration, ...), or {} when it has none."""
    if run.name not in CONFIG_KIND or "config" not in args:
        return {}
    return load_config(run, "--config", args.get("config"), CONFIG_KIND[run.name])


def check_common(run: Run, args: Args) -> None:
    """Everything the real daemons check before they start serving, decided by which flags are present."""
    if args.positional:
        raise StandinError(f"{run.name} takes no positional arguments, got {list(args.positional)}")
    for flag in sorted(FILE_FLAGS & args.values.keys()):
        for path in args.all(flag):
            require_file(f"--{flag}", path)
    for flag in sorted(CA_FLAGS & args.values.keys()):
        check_ca_bundle(f"--{flag}", args.get(flag))
    for cert_flag, key_flag in CERT_KEY_PAIRS:
        check_pair(args, cert_flag, key_flag)
    for cert_flag, ca_flag, purpose in CHAINS:
        if cert_flag in args and ca_flag in args:
            check_chain(f"--{cert_flag}/--{ca_flag}", args.get(cert_flag), args.get(ca_flag), purpose)
    check_service_account_keys(args)
    for flag, check in CONFIG_CHECKS.items():
        if flag in args:
            check(run, f"--{flag}", args.get(flag))


# --- TLS and HTTP -------------------------------------------------------------------------------------------


def client_context(cafile: str | None = None, verify: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # With TLS 1.2 a server's rejection of our client certificate arrives as an alert in the handshake; with
    # 1.3 it comes after the handshake and can be lost to a connection reset, which would look transient.
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cafile:
        ctx.load_verify_locations(cafile=cafile)
    else:
        ctx.load_default_certs()
    return ctx


def server_context(cert: str, key: str, client_ca: str | None, client_auth: ssl.VerifyMode) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_pair(ctx, cert, key, "serving certificate")
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = client_auth
    return ctx


def serving_pair(run: Run, cert: str | None, key: str | None) -> tuple[str, str]:
    """The given serving pair, or what the real component does without one: a fresh self-signed pair."""
    if cert and key:
        return cert, key
    host = socket.gethostname()
    cert_path, key_path = run.scratch / "serving.crt", run.scratch / "serving.key"
    done = openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key_path), "-out", str(cert_path), "-days", "365",
        "-subj", f"/CN={host}@{int(time.time())}",
        "-addext", f"subjectAltName=DNS:{host},DNS:localhost,IP:127.0.0.1",
    )
    if done.returncode:
        raise StandinError(f"cannot generate a self-signed serving certificate: {done.stderr.decode()}")
    log.info("generated self-signed serving certificate for %s", host)
    return str(cert_path), str(key_path)


class _TLSConnection(http_client.HTTPSConnection):
    """HTTPS whose TLS server name may differ from the host dialled (kubeconfig tls-server-name)."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext, server_name: str, timeout: float):
        super().__init__(host, port, context=tls, timeout=timeout)
        self._tls, self._server_name = tls, server_name

    def connect(self) -> None:
        http_client.HTTPConnection.connect(self)
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)


def request(url: str, tls: ssl.SSLContext, *, method: str = "GET", body: bytes | None = None,
            server_name: str | None = None, timeout: float = HTTP_TIMEOUT) -> tuple[int, bytes]:
    """One HTTP(S) request. TLS failures raise TLSFailure; anything transient raises OSError."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https":
        conn: http_client.HTTPConnection = _TLSConnection(
            host, parts.port or 443, tls, server_name or host, timeout
        )
    else:
        conn = http_client.HTTPConnection(host, parts.port or 80, timeout=timeout)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        headers = {"Content-Type": "application/json"} if body else {}
        conn.request(method, path or "/", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except ssl.SSLCertVerificationError as e:
        raise TLSFailure(f"{url}: server certificate not trusted: {e.verify_message}") from None
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        raise  # the peer closed the connection: transient
    except ssl.SSLError as e:
        reason = e.reason or str(e)
        hint = " (the server rejected our client certificate, or none was sent)" if "ALERT" in reason else ""
        raise TLSFailure(f"{url}: TLS handshake failed: {reason}{hint}") from None
    except http_client.HTTPException as e:
        raise ConnectionError(f"{url}: bad HTTP response: {e!r}") from None
    finally:
        conn.close()


Route = Callable[[str], tuple[int, str, bytes]]


def text(status: int, body: str) -> tuple[int, str, bytes]:
    return status, "text/plain; charset=utf-8", body.encode()


def as_json(status: int, body: object) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body, indent=2).encode()


def health_routes(path: str) -> tuple[int, str, bytes]:
    return text(200, "ok") if path in ("/healthz", "/readyz", "/livez") else text(404, "404 page not found\n")


class _Handler(BaseHTTPRequestHandler):
    server: Listener

    def do_GET(self) -> None:
        status, content_type, body = self.server.route(urlsplit(self.path).path)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Health checks poll every second; logging each would flood the journal."""

    def log_message(self, format: str, *args: object) -> None:
        log.warning("%s: %s", self.address_string(), format % args)


class Listener(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], route: Route, tls: ssl.SSLContext | None):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.route, self.tls = route, tls
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the bind address with getfqdn, which hangs on hosts without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request: socket.socket, client_address: tuple) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)  # handshake in the worker thread
        except OSError as e:
            log.warning("TLS handshake error from %s: %s", client_address[0], e)
            return
        with conn:
            super().finish_request(conn, client_address)


# --- kubeconfig and the apiserver watch ---------------------------------------------------------------------


@dataclass(frozen=True)
class ApiTarget:
    kubeconfig: str
    server: str
    server_name: str | None
    tls: ssl.SSLContext

    def get(self, path: str) -> tuple[int, bytes]:
        return request(self.server.rstrip("/") + path, self.tls, server_name=self.server_name)


def _named(doc: dict, section: str, name: str, where: str) -> dict:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get(section[:-1]) or {}
    raise StandinError(f"{where}: no {section[:-1]} named {name!r}")


def _material(run: Run, where: str, entry: dict, key: str, base: Path) -> str | None:
    """Path to PEM given inline as `<key>-data` or as a file `<key>` (relative to the kubeconfig)."""
    if data := entry.get(f"{key}-data"):
        try:
            pem = base64.b64decode(data, validate=True)
        except ValueError:
            raise StandinError(f"{where}: {key}-data is not base64") from None
        path = run.scratch / sha256(pem).hexdigest()[:16]
        path.write_bytes(pem)
        return str(path)
    if name := entry.get(key):
        path = base / name
        require_file(f"{where}: {key}", str(path))
        return str(path)
    return None


def load_kubeconfig(run: Run, where: str, path: str, context: str | None = None) -> ApiTarget:
    doc = load_config(run, where, path, "Config")
    where = f"{where} {path}"
    context_name = context or doc.get("current-context")
    if not context_name:
        raise StandinError(f"{where}: no current-context")
    ctx = _named(doc, "contexts", context_name, where)
    cluster = _named(doc, "clusters", ctx.get("cluster", ""), where)
    user_name = ctx.get("user", "")
    user = _named(doc, "users", user_name, where)
    if not cluster.get("server"):
        raise StandinError(f"{where}: cluster {ctx.get('cluster')!r} has no server")
    base = Path(path).parent
    ca = _material(run, where, cluster, "certificate-authority", base)
    cert = _material(run, where, user, "client-certificate", base)
    key = _material(run, where, user, "client-key", base)
    if not (cert and key):
        raise StandinError(
            f"{where}: user {user_name!r} has no client certificate and key "
            "(the lab stand-ins authenticate only by client certificate)"
        )
    if ca:
        check_ca_bundle(f"{where}: certificate-authority", ca)
    tls = client_context(ca, verify=not cluster.get("insecure-skip-tls-verify"))
    load_pair(tls, cert, key, f"{where}: user {user_name!r}")
    return ApiTarget(where, cluster["server"], cluster.get("tls-server-name"), tls)


def kubeconfig_target(run: Run, args: Args, config: dict) -> ApiTarget | None:
    """Validate every kubeconfig the component was given; return the one it talks to the apiserver with."""
    for flag in ("authentication-kubeconfig", "authorization-kubeconfig"):
        if flag in args:
            load_kubeconfig(run, f"--{flag}", args.get(flag))
    if "kubeconfig" in args:
        return load_kubeconfig(run, "--kubeconfig", args.get("kubeconfig"))
    path = (config.get("clientConnection") or {}).get("kubeconfig")
    return load_kubeconfig(run, "--config clientConnection.kubeconfig", path) if path else None


def require_target(run: Run, target: ApiTarget | None) -> ApiTarget:
    if target is None:
        raise StandinError(
            "no kubeconfig given (--kubeconfig or the config's clientConnection.kubeconfig): "
            f"the real {run.name} would fall back to in-cluster configuration and fail"
        )
    return target


def watch_apiserver(run: Run, target: ApiTarget) -> int:
    """Call /readyz every few seconds like the real clients: retry connection trouble, exit on TLS trouble."""
    while True:
        try:
            status, body = target.get("/readyz")
            reply = body[:200].decode(errors="replace")
            problem = None if status == 200 else f"/readyz answered {status}: {reply}"
        except OSError as e:
            problem = str(e) or type(e).__name__
        except TLSFailure as e:
            raise TLSFailure(f"{target.kubeconfig}: {e}") from None
        if problem:
            log.warning("apiserver %s: %s", target.server, problem)
        elif not run.api_ok:
            log.info("apiserver %s is ready (client certificate from %s)", target.server, target.kubeconfig)
        run.api_ok = problem is None
        if run.stop.wait(POLL_SECONDS):
            return 0


# --- the run ------------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    version: str
    fields: Mapping[str, frozenset[str]]
    scratch: Path
    stop: threading.Event = field(default_factory=threading.Event)
    listeners: list[Listener] = field(default_factory=list)
    api_ok: bool = False

    def listen(self, host: str, port: int, route: Route, tls: ssl.SSLContext | None) -> None:
        try:
            server = Listener((host, port), route, tls)
        except OSError as e:
            raise StandinError(f"cannot listen on {host}:{port}: {e}") from None
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.listeners.append(server)
        log.info("serving %s on %s:%d", "HTTPS" if tls else "HTTP", host, port)

    def close(self) -> None:
        for server in self.listeners:
            server.shutdown()
            server.server_close()

    def version_info(self) -> dict[str, str]:
        major, minor = self.version.lstrip("v").split(".")[:2]
        return {
            "major": major, "minor": minor, "gitVersion": self.version, "gitCommit": "kubefab-lab-standin",
            "gitTreeState": "clean", "platform": f"linux/{platform.machine()}",
        }


def split_hostport(where: str, value: str) -> tuple[str, int]:
    match = re.fullmatch(r"\[?([^\]]*?)\]?:(\d+)", value)
    if not match:
        raise StandinError(f"{where}: {value!r} is not host:port")
    return match[1], int(match[2])


# --- components ---------------------------------------------------------------------------------------------


def run_apiserver(run: Run, args: Args) -> int:
    check_common(run, args)
    for flag in ("etcd-servers", "service-account-issuer", "service-account-signing-key-file"):
        if not args.get(flag):
            raise StandinError(f"--{flag} is required")
    if "client-ca-file" not in args:
        raise StandinError("--client-ca-file is required (the stand-in authenticates by client certificates)")
    etcd_tls = client_context(args.get("etcd-cafile"))
    if "etcd-certfile" in args:
        cert, key = args.get("etcd-certfile"), args.get("etcd-keyfile")
        load_pair(etcd_tls, cert, key, "--etcd-certfile/--etcd-keyfile")
    endpoints = [e.strip() for e in args.get("etcd-servers").split(",") if e.strip()]
    for endpoint in endpoints:
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise StandinError(f"--etcd-servers: {endpoint!r} is not an http(s) URL")
    key = f"{args.get('etcd-prefix', '/registry').rstrip('/')}/kubefab-standin/{socket.gethostname()}"
    for endpoint in endpoints:
        etcd_startup(run, endpoint, etcd_tls, key)
    if run.stop.is_set():
        return 0
    health = EtcdHealth(endpoints, etcd_tls, key)
    threading.Thread(target=health.loop, args=(run.stop,), daemon=True).start()
    cert, private_key = serving_pair(run, args.get("tls-cert-file"), args.get("tls-private-key-file"))
    tls = server_context(cert, private_key, args.get("client-ca-file"), ssl.CERT_REQUIRED)
    address = args.get("bind-address") or "0.0.0.0"
    run.listen(address, args.integer("secure-port", 6443), apiserver_routes(run, health), tls)
    run.stop.wait()
    return 0


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def etcd_call(endpoint: str, tls: ssl.SSLContext, op: str, payload: dict) -> dict:
    """One call to etcd's v3 JSON gateway (etcd 3.4+)."""
    status, body = request(f"{endpoint.rstrip('/')}/v3/kv/{op}", tls, method="POST",
                           body=json.dumps(payload).encode(), timeout=ETCD_TIMEOUT)
    if status != 200:
        raise ConnectionError(f"{op} answered {status}: {body[:200].decode(errors='replace')}")
    try:
        return json.loads(body)
    except ValueError:
        raise ConnectionError(f"{op} answered with something other than JSON: {body[:200]!r}") from None


def etcd_read(endpoint: str, tls: ssl.SSLContext, key: str) -> str | None:
    kvs = etcd_call(endpoint, tls, "range", {"key": _b64(key)}).get("kvs") or []
    return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None


def etcd_startup(run: Run, endpoint: str, tls: ssl.SSLContext, key: str) -> None:
    """Write a key and read it back; wait for etcd up to a minute, fail at once on TLS trouble."""
    deadline = time.monotonic() + ETCD_STARTUP_SECONDS
    while not run.stop.is_set():
        value = str(time.time_ns())
        try:
            etcd_call(endpoint, tls, "put", {"key": _b64(key), "value": _b64(value)})
            if etcd_read(endpoint, tls, key) != value:
                raise StandinError(f"etcd {endpoint}: read back a different value for {key}")
            log.info("etcd %s: wrote and read back %s", endpoint, key)
            return
        except TLSFailure as e:
            hint = "check --etcd-certfile, --etcd-keyfile, --etcd-cafile"
            raise TLSFailure(f"etcd: {e} ({hint})") from None
        except OSError as e:
            log.warning("etcd %s not answering yet: %s", endpoint, e)
            if time.monotonic() > deadline:
                waited = f"{ETCD_STARTUP_SECONDS:.0f} s"
                raise StandinError(f"etcd {endpoint} did not answer within {waited}: {e}") from None
        run.stop.wait(1.0)


class EtcdHealth:
    """Whether any etcd endpoint answers, checked at most once a second in the background."""

    def __init__(self, endpoints: list[str], tls: ssl.SSLContext, key: str):
        self.endpoints, self.tls, self.key = endpoints, tls, key
        self.ok = True  # startup just wrote and read every endpoint
        self.errors: dict[str, str | None] = dict.fromkeys(endpoints)

    def loop(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            self.ok = any([self.check(endpoint) for endpoint in self.endpoints])  # a list: log every endpoint

    def check(self, endpoint: str) -> bool:
        try:
            etcd_read(endpoint, self.tls, self.key)
            error = None
        except (OSError, StandinError) as e:
            error = str(e) or type(e).__name__
        if error != self.errors[endpoint]:  # log changes, not every second of an outage
            if error:
                log.error("etcd %s failed: %s", endpoint, error)
            else:
                log.info("etcd %s answers again", endpoint)
        self.errors[endpoint] = error
        return error is None


def apiserver_routes(run: Run, health: EtcdHealth) -> Route:
    def route(path: str) -> tuple[int, str, bytes]:
        if path in ("/readyz", "/healthz", "/livez"):
            if health.ok:
                return text(200, "ok")
            return text(500, f"[-]etcd failed: reason withheld\n{path[1:]} check failed\n")
        if path == "/version":
            return as_json(200, run.version_info())
        return text(404, "404 page not found\n")

    return route


def run_control_plane_client(run: Run, args: Args, default_port: int) -> int:
    """kube-controller-manager and kube-scheduler: serve /healthz over HTTPS, watch the apiserver."""
    check_common(run, args)
    config = component_config(run, args)
    target = require_target(run, kubeconfig_target(run, args, config))
    port = args.integer("secure-port", default_port)
    if port:  # 0 turns serving off, as in the real ones
        cert, key = serving_pair(run, args.get("tls-cert-file"), args.get("tls-private-key-file"))
        tls = server_context(cert, key, args.get("client-ca-file"), ssl.CERT_OPTIONAL)
        run.listen(args.get("bind-address") or "0.0.0.0", port, health_routes, tls)
    return watch_apiserver(run, target)


@dataclass(frozen=True)
class KubeletServing:
    cert: str | None
    key: str | None
    client_ca: str | None
    anonymous: bool
    address: str
    port: int
    healthz_address: str
    healthz_port: int


def kubelet_serving(path: str | None, config: dict) -> KubeletServing:
    """Read and check the serving part of a KubeletConfiguration; its paths are relative to the file."""
    where = f"--config {path}"
    base = Path(path or ".").parent

    def file(value: str | None, name: str) -> str | None:
        if value:
            require_file(f"{where}: {name}", str(base / value))
            return str(base / value)
        return None

    authn = config.get("authentication") or {}
    serving = KubeletServing(
        cert=file(config.get("tlsCertFile"), "tlsCertFile"),
        key=file(config.get("tlsPrivateKeyFile"), "tlsPrivateKeyFile"),
        client_ca=file((authn.get("x509") or {}).get("clientCAFile"), "authentication.x509.clientCAFile"),
        anonymous=bool((authn.get("anonymous") or {}).get("enabled", False)),
        address=config.get("address") or "0.0.0.0",
        port=int(config.get("port") or 10250),
        healthz_address=config.get("healthzBindAddress") or "127.0.0.1",
        healthz_port=int(config.get("healthzPort", 10248)),
    )
    if bool(serving.cert) != bool(serving.key):
        raise StandinError(f"{where}: tlsCertFile and tlsPrivateKeyFile must be given together")
    if serving.cert and serving.key:
        load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), serving.cert, serving.key, f"{where}: tlsCertFile")
    if serving.client_ca:
        check_ca_bundle(f"{where}: authentication.x509.clientCAFile", serving.client_ca)
    runtime = config.get("containerRuntimeEndpoint", "")
    if runtime.startswith("unix://") and not Path(runtime[len("unix://"):]).exists():
        log.warning("container runtime socket %s does not exist (containerd not running?)", runtime)
    return serving


def run_kubelet(run: Run, args: Args) -> int:
    check_common(run, args)
    config = component_config(run, args)
    serving = kubelet_serving(args.get("config"), config)
    target = kubeconfig_target(run, args, {})
    if config.get("enableServer", True):
        cert, key = serving_pair(run, serving.cert, serving.key)
        client_auth = ssl.CERT_OPTIONAL if serving.anonymous else ssl.CERT_REQUIRED
        tls = server_context(cert, key, serving.client_ca, client_auth)
        run.listen(serving.address, serving.port, health_routes, tls)
    if serving.healthz_port:
        run.listen(serving.healthz_address, serving.healthz_port, health_routes, None)
    if target is None:
        log.info("no --kubeconfig: standalone mode, not talking to an apiserver")
        run.stop.wait()
        return 0
    return watch_apiserver(run, target)


def run_proxy(run: Run, args: Args) -> int:
    check_common(run, args)
    config = component_config(run, args)
    target = require_target(run, kubeconfig_target(run, args, config))
    healthz = config.get("healthzBindAddress") or args.get("healthz-bind-address") or "0.0.0.0:10256"
    metrics = config.get("metricsBindAddress") or args.get("metrics-bind-address") or "127.0.0.1:10249"
    run.listen(*split_hostport("healthzBindAddress", healthz), partial(proxy_healthz, run), None)
    run.listen(*split_hostport("metricsBindAddress", metrics), proxy_metrics, None)
    return watch_apiserver(run, target)


def proxy_healthz(run: Run, path: str) -> tuple[int, str, bytes]:
    """Healthy once the apiserver answered, as the real one is once it has synced its rules."""
    if path not in ("/healthz", "/livez"):
        return text(404, "404 page not found\n")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return as_json(200 if run.api_ok else 503, {"lastUpdated": now, "currentTime": now, "nodeEligible": True})


def proxy_metrics(path: str) -> tuple[int, str, bytes]:
    if path != "/metrics":
        return health_routes(path)
    return text(200, "# kubefab lab stand-in: no real metrics\nkubefab_standin_up 1\n")


def run_kubectl(run: Run, args: Args) -> int:
    unsupported = sorted(set(args.values) - KUBECTL_FLAGS)
    if unsupported:
        raise StandinError(not_implemented(f"--{unsupported[0]}"))
    words = args.positional
    if words == ("version",):
        print(f"Client Version: {run.version} (kubefab lab stand-in, not Kubernetes)")
        if not args.flag("client"):
            print(f"Server Version: {json.loads(kubectl_get(run, args, '/version'))['gitVersion']}")
        return 0
    if words == ("get",) and args.get("raw"):
        body = kubectl_get(run, args, args.get("raw"))
        sys.stdout.write(body if body.endswith("\n") else body + "\n")
        return 0
    raise StandinError(not_implemented(" ".join(words)))


def kubectl_command(argv: list[str]) -> str:
    """The subcommand, found before flags are parsed so that `kubectl apply -f x` is named as `apply`."""
    words = iter(argv)
    for word in words:
        if word in ("--kubeconfig", "--context"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def not_implemented(command: str) -> str:
    return f"kubectl stand-in: {command!r} is not implemented (lab stand-in, not Kubernetes)"


def kubectl_get(run: Run, args: Args, path: str) -> str:
    kubeconfig = args.get("kubeconfig") or os.environ.get("KUBECONFIG", "").split(":")[0]
    kubeconfig = kubeconfig or str(Path.home() / ".kube" / "config")
    target = load_kubeconfig(run, "kubeconfig", kubeconfig, args.get("context"))
    if args.get("server"):  # like kubectl: the kubeconfig's credentials, another address
        target = replace(target, server=args.get("server"))
    try:
        status, body = target.get(path)
    except OSError as e:
        raise StandinError(f"The connection to the server {target.server} failed: {e}") from None
    if not 200 <= status < 300:
        raise StandinError(f"the server answered {status}: {body.decode(errors='replace').strip()}")
    return body.decode(errors="replace")


ENTRY_POINTS: Mapping[str, Callable[[Run, Args], int]] = {
    "kube-apiserver": run_apiserver,
    "kube-controller-manager": partial(run_control_plane_client, default_port=10257),
    "kube-scheduler": partial(run_control_plane_client, default_port=10259),
    "kubelet": run_kubelet,
    "kube-proxy": run_proxy,
    "kubectl": run_kubectl,
}


def builtin(run: Run, args: Args, valid: Iterable[str]) -> bool:
    """--help and --version of the daemons; True when one of them answered."""
    if args.flag("help"):
        print(f"Usage: {run.name} [flags]  (kubefab lab stand-in, not Kubernetes)\n\nFlags:")
        print("\n".join(f"      --{name}" for name in sorted(valid)))
        return True
    if args.get("version", "false") not in FALSE_WORDS:
        if args.get("version") == "raw":
            print(json.dumps(run.version_info()))
        else:
            print(f"Kubernetes {run.version} (kubefab lab stand-in, not Kubernetes)")
        return True
    return False


def run_crictl(version: str, argv: list[str]) -> int:
    """crictl is not packaged by Debian: the lab installs this so the node phase has the same files."""
    if argv in (["--version"], ["-v"], ["version"]):
        print(f"crictl version {version} (kubefab lab stand-in, not cri-tools)")
        return 0
    print(f"crictl stand-in: {' '.join(argv) or '(no command)'!r} is not implemented (lab stand-in, not cri-tools)",
          file=sys.stderr)
    return 1


def main(name: str, version: str, flags: Iterable[str], config_fields: Mapping[str, Iterable[str]],
         argv: list[str]) -> int:
    if name == "crictl":
        return run_crictl(version, argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(levelname).1s%(asctime)s.%(msecs)03d %(message)s", datefmt="%m%d %H:%M:%S")
    log.info("kubefab lab stand-in for %s %s: not Kubernetes", name, version)
    valid = frozenset(flags) | (KUBECTL_FLAGS if name == "kubectl" else BUILTIN_FLAGS)
    fields = {kind: frozenset(names) | {"apiVersion", "kind"} for kind, names in config_fields.items()}
    with tempfile.TemporaryDirectory(prefix="kubefab-standin-") as scratch:
        run = Run(name, version, fields, Path(scratch))
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: run.stop.set())
        try:
            if name == "kubectl" and kubectl_command(argv) not in KUBECTL_COMMANDS:
                raise StandinError(not_implemented(kubectl_command(argv)))
            args = parse_args(argv, valid)
            if name != "kubectl" and builtin(run, args, valid):
                return 0
            code = ENTRY_POINTS[name](run, args)
            if run.stop.is_set():
                log.info("stopped")
            return code
        except StandinError as e:
            log.error("Error: %s", e)
            return 1
        finally:
            run.close()
