"""Rules about the files an inventory points to on the operator's machine: the cluster and bundle directories
and the CAs it imports. Read-only; run with the cross-field rules, before anything is written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubefab.pki import certs, keys
from kubefab.playbooks import bundle
from kubefab.playbooks.checks import problem
from kubefab.playbooks.findings import Finding
from kubefab.playbooks.model import Cluster

MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
MAX_PEM_BYTES = 1 << 16


def check(c: Cluster) -> list[Finding]:
    return [*_directories(c), *_imported_cas(c)]


def _directories(c: Cluster) -> Iterator[Finding]:
    for field, path in (("cluster_dir", c.dir), ("bundle", c.bundle_dir)):
        if path.exists() and not path.is_dir():
            yield problem((field,), f"{path}, which is a file", "a directory (or a path that does not exist yet)")
    # Before 0.2 the default was clusters/<name> under the working directory: a CA there must not be forgotten.
    earlier = (Path.cwd() / "clusters" / c.name).resolve()
    if c.cluster_dir is None and earlier != c.dir and (earlier / "pki").is_dir() and not c.dir.exists():
        yield problem(
            ("cluster_dir",),
            f"no cluster directory at {c.dir}, but {earlier} holds this cluster's PKI (the working directory's "
            "clusters/, the default before kubefab 0.2)",
            f"cluster_dir: {earlier} in the inventory, or that directory moved to {c.dir}",
        )
    if c.bundle_dir.is_dir():
        try:
            bundle.read_manifest(c.bundle_dir)
        except bundle.ManifestError as exc:
            yield problem(("bundle",), str(exc), "a bundle directory written by `kubefab bundle`")


def _imported_cas(c: Cluster) -> Iterator[Finding]:
    now = dt.datetime.now(dt.UTC)
    used = ("kubernetes",) if c.certificates.authorities == "single" else ("kubernetes", "etcd", "front_proxy")
    for name in used:
        imported = getattr(c.certificates.import_ca, name)
        if imported is None:
            continue
        field = ("certificates", "import_ca", name)
        cert_file, key_file = c.path(imported.cert), c.path(imported.key)
        try:
            cert = x509.load_pem_x509_certificate(_read(cert_file))
        except (OSError, ValueError) as exc:
            yield problem((*field, "cert"), f"{cert_file}: {_reason(exc)}", "a readable PEM certificate")
            continue
        try:
            private = keys.load_key(_read(key_file))
        except (OSError, ValueError, TypeError) as exc:
            yield problem((*field, "key"), f"{key_file}: {_reason(exc)}", "a readable unencrypted PEM private key")
            continue
        yield from _authority(c, cert, private, cert_file, field, now)


def _authority(
    c: Cluster, cert: x509.Certificate, private: keys.PrivateKey, cert_file: Path, field: tuple, now: dt.datetime
) -> Iterator[Finding]:
    where = (*field, "cert")
    if not certs.is_ca(cert):
        yield problem(where, f"{cert_file}: basicConstraints CA:FALSE (a leaf)", "a CA certificate (CA:TRUE)")
    elif not certs.signed_by(cert, cert):
        yield problem(
            where,
            f"{cert_file}: not self-signed (an intermediate CA?)",
            "a self-signed root CA: hosts get this file alone as their trust anchor (intermediates not supported)",
        )
    strength = _strength(private)
    if strength:
        yield problem((*field, "key"), strength, f"RSA of {MIN_RSA_BITS} bits or more, or EC P-256 or stronger")
    if not keys.matches(cert, private):
        yield problem((*field, "key"), f"a key that does not match {cert_file}", "the CA's own private key")
    if cert.not_valid_before_utc > now:
        yield problem(where, f"{cert_file}: valid only from {cert.not_valid_before_utc:%Y-%m-%d}", "a CA valid now")
    left = cert.not_valid_after_utc - now
    if left <= dt.timedelta(0):
        expired = f"{cert_file}: expired on {cert.not_valid_after_utc:%Y-%m-%d}"
        yield problem(where, expired, "a CA that has not expired")
    elif left.days < c.certificates.validity_days:
        yield problem(
            where,
            f"{cert_file}: expires on {cert.not_valid_after_utc:%Y-%m-%d}, in {left.days} days",
            f"a CA valid longer than certificates.validity_days ({c.certificates.validity_days}): "
            "leaves are cut short at the CA's expiry",
            "warning",
        )


def _strength(key: keys.PrivateKey) -> str | None:
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        return f"an RSA key of {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size < MIN_EC_BITS:
        return f"an EC key on {key.curve.name}"
    return None


def _read(path: Path) -> bytes:
    """A PEM file's bytes; a file too large to be one is refused before it is read whole."""
    with path.open("rb") as f:
        data = f.read(MAX_PEM_BYTES + 1)
    if len(data) > MAX_PEM_BYTES:
        raise ValueError(f"more than {MAX_PEM_BYTES} bytes, too large for a PEM file")
    return data


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:200]
