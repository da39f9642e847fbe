"""`certs.check`: what is on disk against what the inventory asks, without changing anything."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from kubefab.pki import certs
from kubefab.pki.profiles import authorities, identities
from kubefab.pki.store import pair_files, pki_dir
from kubefab.playbooks.model import Cluster


@dataclass(frozen=True)
class CheckRow:
    identity: str
    file: str
    expires: dt.datetime | None
    days_left: int | str
    status: str  # ok | missing | expires soon | mismatch: ...


def check_rows(c: Cluster, now: dt.datetime | None = None) -> list[CheckRow]:
    now = now or dt.datetime.now(dt.UTC)
    rows: list[CheckRow] = []
    ca_certs: dict[str, x509.Certificate] = {}
    for spec in authorities(c):
        cert = _load(pki_dir(c) / f"{spec.file}.crt")
        if cert is not None:
            ca_certs[spec.name] = cert
        if spec.file == "ca" and spec.name != "kubernetes":
            continue  # single CA: reported once
        rows.append(_row(c, f"{spec.name} CA", spec.file, cert, now, []))
    for ident in identities(c):
        crt, _ = pair_files(pki_dir(c) / ident.file)
        cert = _load(crt)
        issues: list[str] = []
        if cert is not None:
            issues = certs.differences(cert, ident.request)
            ca = ca_certs.get(ident.authority)
            if ca is None or not certs.signed_by(cert, ca):
                issues.append(f"not signed by the {ident.authority} CA")
        rows.append(_row(c, ident.id, ident.file, cert, now, issues))
    return rows


def _load(path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _row(
    c: Cluster, identity: str, file: str, cert: x509.Certificate | None, now: dt.datetime, issues: list[str]
) -> CheckRow:
    path = f"pki/{file}.crt"
    if cert is None:
        return CheckRow(identity, path, None, "-", "missing")
    days = (cert.not_valid_after_utc - now).days
    if issues:
        status = "mismatch: " + "; ".join(issues)
    elif days < c.certificates.renew_within_days and identity.endswith(" CA"):
        status = ("CA expires soon" if days >= 0 else "CA expired") + ": kubefab never replaces a CA; rotate it by hand"
    elif days < c.certificates.renew_within_days:
        status = "expires soon" if days >= 0 else "expired"
    else:
        status = "ok"
    return CheckRow(identity, path, cert.not_valid_after_utc, days, status)
