"""A cluster's identity is its CA. Before anything changes, every CA certificate found on a host must be the one
in the local cluster directory: a deploy from the wrong directory (or with the wrong `cluster_dir`) would
otherwise push a brand-new CA onto a running cluster. Pure: the facts' file contents in, findings out."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence

from kubefab.pki.profiles import ETCD_PKI, authorities
from kubefab.pki.store import trust
from kubefab.playbooks.facts import Facts
from kubefab.playbooks.findings import Finding
from kubefab.playbooks.inputs import REMOTE_PKI
from kubefab.playbooks.model import Cluster, Host

CHECK = "cluster identity"
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


def blocks(pem: bytes) -> list[bytes]:
    """Each certificate of a PEM file, as its own PEM block."""
    return [m.group(0) for m in _PEM.finditer(pem)]


def fingerprints(pem: bytes) -> tuple[str, ...]:
    """SHA-256 of each certificate in a PEM file, as `openssl x509 -noout -fingerprint -sha256` prints it."""
    out = []
    for body in _PEM.findall(pem):
        digest = hashlib.sha256(base64.b64decode(b"".join(body.split()))).hexdigest().upper()
        out.append(":".join(digest[i : i + 2] for i in range(0, len(digest), 2)))
    return tuple(out)


def expected(c: Cluster, credentials: Mapping[str, bytes]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every path a host may hold a CA certificate at -> (the authority, the local fingerprints it may hold: the
    CA's, and during a rotation the other CA's, since hosts are between the two until it is rolled out)."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for ca in authorities(c):
        known = fingerprints(trust(credentials, ca.file))
        out[f"{REMOTE_PKI}/{ca.remote}.crt"] = (ca.name, known)
        if ca.name == "etcd":
            out[f"{ETCD_PKI}/ca.crt"] = (ca.name, known)
    return out


def check(
    c: Cluster, credentials: Mapping[str, bytes], facts: Mapping[str, Facts], hosts: Sequence[Host] | None = None
) -> list[Finding]:
    want = expected(c, credentials)
    out = []
    for host in c.hosts if hosts is None else hosts:
        trusted = {path: content for path, content in facts[host.name].trust.items() if path in want}
        wrong = []
        for path, content in sorted(trusted.items()):
            authority, local = want[path]
            found = fingerprints(content)
            if not set(local) & set(found):
                wrong.append(
                    f"{path} holds the {authority} CA SHA256 {', '.join(found) or '(no certificate)'}, the cluster "
                    f"directory {c.dir} has SHA256 {', '.join(local)}"
                )
        if wrong:
            out.append(
                Finding(
                    host.name,
                    CHECK,
                    "fail",
                    "; ".join(wrong) + ": this host belongs to another cluster directory (run from where the "
                    "cluster was deployed, or set cluster_dir)",
                )
            )
        else:
            detail = "same CA as the cluster directory" if trusted else "no CA yet: a new host"
            out.append(Finding(host.name, CHECK, "ok", detail))
    return out
