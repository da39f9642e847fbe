"""What `plan` shows for a changed file: a unified diff a person can read. Certificates are shown as what they
say (subject, SANs, issuer, validity, fingerprint), never as base64 lines; anything holding secret material
(a private key, a generated secret) is named but never shown, even if its file was not marked secret."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from cryptography import x509

from kubefab.pki import certs
from kubefab.playbooks.identity import blocks, fingerprints


def certificate_lines(pem: bytes) -> list[str]:
    """One line per fact of every certificate in `pem`; the PEM text itself when it does not parse."""
    out: list[str] = []
    for block in blocks(pem):
        try:
            cert = x509.load_pem_x509_certificate(block)
        except ValueError:
            return pem.decode(errors="replace").splitlines()
        said = certs.describe(cert)
        (fingerprint,) = fingerprints(block)
        out += [
            f"subject: {cert.subject.rfc4514_string()}",
            f"issuer: {cert.issuer.rfc4514_string()}",
            f"DNS SANs: {', '.join(sorted(said.dns_names)) or '-'}",
            f"IP SANs: {', '.join(sorted(str(i) for i in said.ip_addresses)) or '-'}",
            f"usages: {', '.join(said.usages) or '-'}{' (CA)' if certs.is_ca(cert) else ''}",
            f"valid: {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
            f"SHA256: {fingerprint}",
        ]
    return out


def is_certificate(content: bytes) -> bool:
    return content.lstrip().startswith(b"-----BEGIN CERTIFICATE-----")


def holds_secret(content: bytes, secrets: Iterable[str]) -> bool:
    """A private key, or one of the cluster's generated secrets, anywhere in `content`."""
    return b"PRIVATE KEY-----" in content or any(s and s.encode() in content for s in secrets)


def file_diff(label: str, current: bytes, new: bytes, secrets: Iterable[str] = (), secret: bool = False) -> str:
    """`label` plus the diff from `current` (empty: the file is new) to `new`."""
    state = "new" if not current else "changed"
    if secret or holds_secret(new, secrets) or holds_secret(current, secrets):
        return f"{label} ({state}; secret content not shown)"
    if is_certificate(new):
        before = certificate_lines(current) if current else []
        after = certificate_lines(new)
        kind = " (certificate)"
    else:
        before = current.decode(errors="replace").splitlines()
        after = new.decode(errors="replace").splitlines()
        kind = ""
    diff = difflib.unified_diff(before, after, f"{label} on the host", "kubefab", lineterm="")
    return f"{label}{kind}\n" + "\n".join(diff)
