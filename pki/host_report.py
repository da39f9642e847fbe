"""`certs.check --hosts`: the certificates as the hosts hold them (as `kubeadm certs check-expiration` reads a
node), against the cluster directory's. Pure apart from the command string: which files each host holds (from
pki.profiles, the same table deploy delivers from), a shell command that prints only their certificates (never
a key leaves the host), and the rows made of its output."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509

from kubefab.pki.profiles import ETCD_PKI, REMOTE_PKI, authorities, identities
from kubefab.playbooks.model import Cluster, Host

MISSING = "(missing)"


@dataclass(frozen=True)
class Held:
    path: str  # on the host
    kind: str  # crt | pem (certificate then key) | kubeconfig (client-certificate-data)
    local: str  # the cluster directory's certificate it should be, relative: "pki/ca.crt"


@dataclass(frozen=True)
class HostRow:
    file: str
    host: str
    subject: str
    expires: dt.datetime | None
    days_left: int | str
    status: str  # ok | expires soon | expired | missing | unreadable | not the cluster directory's


def held(c: Cluster, host: Host) -> list[Held]:
    """Every certificate kubefab delivers to `host`, where it puts it."""
    out: list[Held] = []
    for ca in authorities(c):
        if host.name in ca.cert_hosts:
            out.append(Held(f"{REMOTE_PKI}/{ca.remote}.crt", "crt", f"pki/{ca.file}.crt"))
        if host.name in ca.key_hosts:
            out.append(Held(ca.signing, "crt", f"pki/{ca.file}.crt"))
        if ca.name == "etcd" and host.has("etcd"):
            out.append(Held(f"{ETCD_PKI}/ca.crt", "crt", f"pki/{ca.file}.crt"))
    for ident in identities(c):
        if host.name not in ident.hosts:
            continue
        local = f"pki/{ident.file}.crt"
        if ident.kubeconfig is not None:
            out.append(Held(ident.kubeconfig.remote, "kubeconfig", local))
        elif ident.pem is not None:
            out.append(Held(ident.pem, "pem", local))
        else:
            out.append(Held(f"{ident.stem}.crt", "crt", local))
    return out


def read_command(files: Iterable[Held]) -> str:
    """Per file a `== path` line, then its certificate blocks (or, for a kubeconfig, its client-certificate-data
    line), or `MISSING`. Keys stay where they are: only certificate lines are printed."""
    parts = []
    for f in files:
        p = shlex.quote(f.path)
        if f.kind == "kubeconfig":
            show = f"grep -h '^ *client-certificate-data:' {p}"
        else:
            show = f"sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' {p}"
        parts.append(f"echo {shlex.quote('== ' + f.path)}; if test -f {p}; then {show}; else echo '{MISSING}'; fi")
    return "\n".join(parts)


def parse(output: str) -> dict[str, str]:
    """path -> what the command printed for it."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("== "):
            current = out.setdefault(line[3:], [])
        elif current is not None:
            current.append(line)
    return {path: "\n".join(lines).strip() for path, lines in out.items()}


def certificate(f: Held, text: str) -> x509.Certificate | None:
    try:
        if f.kind == "kubeconfig":
            value = text.split(":", 1)[1].strip().strip("\"'")
            return x509.load_pem_x509_certificate(base64.b64decode(value, validate=True))
        return x509.load_pem_x509_certificate(text.encode())
    except (IndexError, ValueError, binascii.Error):
        return None


def subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def rows(
    c: Cluster,
    host: Host,
    printed: Mapping[str, str],
    local: Mapping[str, bytes],
    now: dt.datetime,
) -> list[HostRow]:
    """One row per file `host` should hold; `printed` is parse()'s reading, `local` the cluster directory's files
    by relative path (playbooks.inputs credentials)."""
    out = []
    for f in held(c, host):
        text = printed.get(f.path, MISSING)
        if text == MISSING:
            out.append(HostRow(f.path, host.name, "-", None, "-", "missing"))
            continue
        cert = certificate(f, text)
        if cert is None:
            out.append(HostRow(f.path, host.name, "-", None, "-", "unreadable: no certificate in the file"))
            continue
        days = (cert.not_valid_after_utc - now).days
        status = "expired" if days < 0 else "expires soon" if days < c.certificates.renew_within_days else "ok"
        ours = local.get(f.local)
        if ours is None or x509.load_pem_x509_certificate(ours) != cert:
            other = "not the cluster directory's: `kubefab deploy` delivers it"
            status = other if status == "ok" else f"{status}; {other}"
        out.append(HostRow(f.path, host.name, subject(cert), cert.not_valid_after_utc, days, status))
    return out
