"""The one writer of the PKI: reads what is on disk, decides per identity whether to keep, issue or reissue,
and writes only after every file has been assessed, so a bad file stops the run before anything changes.

Layout under `<cluster dir>`: `pki/` (certificates `.crt`, keys `.key`, mode 0600, directories 0700) and
`kubeconfig/` (kubeconfigs with embedded credentials, 0600). CAs are created or imported once and never
replaced; leaves are reissued only when they no longer match the inventory or expire soon.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubefab.pki import certs, keys
from kubefab.pki.kubeconfig import kubeconfig
from kubefab.pki.profiles import CA, AuthorityName, Identity, authorities, identities
from kubefab.playbooks.model import Cluster

SA_KEY = "sa"
RETIRED = "retired"  # under pki/: what kubefab no longer uses but never deletes (old CAs, removed hosts' files)
# A CA rotation's second CA, next to the CA's own files (pki.rotation): the one coming, or the one going.
ROTATING = (".next", ".prev")


class PKIError(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("the PKI was left unchanged:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class Row:
    identity: str
    file: str  # relative to the cluster directory
    expires: dt.datetime | None
    action: str  # kept | issued | reissued: <why> | created | imported | written


@dataclass(frozen=True)
class _Pending:
    """A leaf to sign once every file has been assessed; `private` is kept unless the algorithm changed."""

    ident: Identity
    ca: certs.Authority
    crt: Path
    key: Path
    private: keys.PrivateKey | None
    action: str
    row: int


@dataclass
class _Run:
    """What one pass decided: rows to report, files to write, problems that stop it."""

    root: Path
    now: dt.datetime
    rows: list[Row] = field(default_factory=list)
    writes: dict[Path, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    pending: list[_Pending] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))


def pki_dir(c: Cluster) -> Path:
    return c.dir / "pki"


def kubeconfig_dir(c: Cluster) -> Path:
    return c.dir / "kubeconfig"


@dataclass(frozen=True)
class Decision:
    """What the PKI would become: one row per file with its action, and the files to write (by absolute path),
    nothing written yet. `plan` reads it; `commit` writes it."""

    root: Path
    rows: list[Row]
    writes: dict[Path, bytes]

    def files(self) -> dict[str, bytes]:
        """The cluster directory's PKI and kubeconfigs as they would be, keyed by path relative to it."""
        out: dict[str, bytes] = {}
        for sub in ("pki", "kubeconfig"):
            for path in sorted((self.root / sub).rglob("*")):
                if path.is_file():
                    out[str(path.relative_to(self.root))] = path.read_bytes()
        out.update((str(p.relative_to(self.root)), data) for p, data in self.writes.items())
        return dict(sorted(out.items()))

    def commit(self) -> list[Row]:
        for path, data in self.writes.items():
            write_private(path, data, 0o644 if path.suffix in (".crt", ".pub") else 0o600)
        return self.rows


def assess(c: Cluster, now: dt.datetime | None = None, renew_all: bool = False) -> Decision:
    """What bringing the cluster's PKI in line with the inventory takes, decided in memory: new keys and
    certificates are generated here but nothing is written. With `renew_all` every leaf is reissued (its key
    kept). Raises PKIError when a file on disk is unusable."""
    run = _Run(c.dir, now or dt.datetime.now(dt.UTC))
    cas = _authorities(c, run)
    if not run.problems:
        for ident in identities(c):
            _leaf(c, run, ident, cas[ident.authority], renew_all)
        _service_account(c, run)
    if run.problems:
        raise PKIError(run.problems)
    _sign_pending(c, run)
    kubernetes_ca = next(spec for spec in authorities(c) if spec.name == "kubernetes")
    for ident in identities(c):
        if ident.kubeconfig is not None:
            _kubeconfig(c, run, ident, kubernetes_ca.file)
    return Decision(c.dir, run.rows, run.writes)


def ensure(c: Cluster, now: dt.datetime | None = None) -> list[Row]:
    """Bring the cluster's PKI in line with the inventory; returns one row per file with its action."""
    return assess(c, now).commit()


def trust(files: Mapping[str, bytes], file: str) -> bytes:
    """What is trusted for the CA stored as `pki/<file>` (`files` keyed like Decision.files): the CA, then during a
    rotation the other CA, so that the first certificate is always the one that signs."""
    other = [files[k] for suffix in ROTATING if (k := f"pki/{file}{suffix}.crt") in files]
    return files[f"pki/{file}.crt"] + b"".join(other[:1])


def trusted(c: Cluster, file: str, writes: Mapping[Path, bytes] | None = None) -> bytes:
    """`trust` of the cluster directory's certificates of the CA `file`, as they are or as `writes` leaves them."""
    files = {}
    for suffix in ("", *ROTATING):
        path = pki_dir(c) / f"{file}{suffix}.crt"
        data = (writes or {}).get(path) or (path.read_bytes() if path.exists() else None)
        if data is not None:
            files[f"pki/{file}{suffix}.crt"] = data
    return trust(files, file)


def retire_host(c: Cluster, name: str, now: dt.datetime | None = None) -> Path | None:
    """A removed host's own certificates, keys and kubelet kubeconfig moved under pki/retired/hosts/ (kept, not
    deleted; not delivered anywhere again). Returns where they went, or None when there was nothing."""
    found = [p for p in (pki_dir(c) / "hosts" / name, kubeconfig_dir(c) / f"kubelet-{name}.conf") if p.exists()]
    if not found:
        return None
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    into = pki_dir(c) / RETIRED / "hosts" / f"{name}-{stamp}"
    _private_dirs(into)
    for path in found:
        os.replace(path, into / path.name)
    return into


def pair_files(base: Path) -> tuple[Path, Path]:
    return base.with_name(base.name + ".crt"), base.with_name(base.name + ".key")


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically write `data` (owner-only unless `mode` says otherwise: certificates and public keys are not
    secret) in directories only the owner can enter."""
    _private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _private_dirs(path: Path) -> None:
    if not path.exists():
        _private_dirs(path.parent)
        path.mkdir(mode=0o700)


def _read_pair(run: _Run, base: Path) -> tuple[x509.Certificate, keys.PrivateKey] | None:
    """The certificate and key at base.crt/base.key; None when neither exists; a problem when they don't
    make a valid pair (nothing is ever overwritten silently)."""
    crt, key = pair_files(base)
    if not crt.exists() and not key.exists():
        return None
    if not crt.exists() or not key.exists():
        have, missing = (crt, key) if crt.exists() else (key, crt)
        run.problems.append(f"{have}: present without {missing.name}; restore it or move both away")
        return None
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
    except (ValueError, OSError) as exc:
        run.problems.append(f"{crt}: not a readable PEM certificate ({exc})")
        return None
    try:
        private = keys.load_key(key.read_bytes())
    except (ValueError, TypeError, OSError) as exc:
        run.problems.append(f"{key}: not a readable unencrypted PEM private key ({exc})")
        return None
    if not keys.matches(cert, private):
        run.problems.append(f"{key}: does not match the certificate {crt}")
        return None
    return cert, private


def _authorities(c: Cluster, run: _Run) -> dict[AuthorityName, certs.Authority]:
    out: dict[AuthorityName, certs.Authority] = {}
    by_file: dict[str, certs.Authority] = {}
    for spec in authorities(c):
        if spec.file not in by_file:
            ca = _authority(c, run, spec)
            if ca is None:
                continue
            by_file[spec.file] = ca
        out[spec.name] = by_file[spec.file]
    return out


def _authority(c: Cluster, run: _Run, spec: CA) -> certs.Authority | None:
    base = pki_dir(c) / spec.file
    existing = _read_pair(run, base)
    imported = getattr(c.certificates.import_ca, spec.name.replace("-", "_"))
    crt, key = pair_files(base)
    if imported is not None:
        source = _imported(c, run, spec, imported.cert, imported.key)
        if source is None:
            return None
        if existing is not None and existing[0] != source.cert:
            run.problems.append(
                f"{crt}: holds a different {spec.name} CA than certificates.import_ca "
                f"({imported.cert}); kubefab never replaces a CA: move {pki_dir(c)} away to start over"
            )
            return None
        if existing is None:
            _stage(run, crt, key, source.cert, source.key)
            run.rows.append(Row(f"{spec.name} CA", run.rel(crt), source.cert.not_valid_after_utc, "imported"))
            return source
    if existing is not None:
        cert, private = existing
        if not certs.is_ca(cert):
            run.problems.append(f"{crt}: is not a CA certificate (basicConstraints CA:FALSE)")
            return None
        run.rows.append(Row(f"{spec.name} CA", run.rel(crt), cert.not_valid_after_utc, "kept"))
        return certs.Authority(cert, private)
    if crt.exists() or key.exists():
        return None  # a half pair: _read_pair reported it
    private = keys.new_key(c.certificates.algorithm)
    cert = certs.new_ca(spec.common_name, private, c.certificates.ca_validity_days, run.now)
    _stage(run, crt, key, cert, private)
    run.rows.append(Row(f"{spec.name} CA", run.rel(crt), cert.not_valid_after_utc, "created"))
    return certs.Authority(cert, private)


def _imported(c: Cluster, run: _Run, spec: CA, cert_file: str, key_file: str) -> certs.Authority | None:
    field = f"certificates.import_ca.{spec.name.replace('-', '_')}"
    try:
        cert = x509.load_pem_x509_certificate(c.path(cert_file).read_bytes())
        private = keys.load_key(c.path(key_file).read_bytes())
    except (ValueError, TypeError, OSError) as exc:
        run.problems.append(f"{c.source}: {field}: cannot read {cert_file} / {key_file}: {exc}")
        return None
    if not certs.is_ca(cert):
        run.problems.append(f"{c.path(cert_file)} ({field}.cert): not a CA certificate")
        return None
    if not certs.signed_by(cert, cert):
        # Hosts are given this file alone as their trust anchor (HAProxy's ca-file, openssl verify, kubelets):
        # an intermediate without its root fails verification there.
        run.problems.append(
            f"{c.path(cert_file)} ({field}.cert): not self-signed (an intermediate CA?); import "
            "a self-signed root CA: intermediates are not supported yet"
        )
        return None
    if not keys.matches(cert, private):
        run.problems.append(f"{c.path(key_file)} ({field}.key): does not match {c.path(cert_file)}")
        return None
    return certs.Authority(cert, private)


def _leaf(c: Cluster, run: _Run, ident: Identity, ca: certs.Authority, renew_all: bool = False) -> None:
    crt, key = pair_files(pki_dir(c) / ident.file)
    existing = _read_pair(run, pki_dir(c) / ident.file)
    if existing is None:
        if not crt.exists() and not key.exists():
            _issue(run, ident, ca, crt, key, None, "issued")
        return
    cert, private = existing
    reasons = [] if certs.signed_by(cert, ca.cert) else [f"not signed by the current {ident.authority} CA"]
    reasons += certs.differences(cert, ident.request)
    algorithm = keys.algorithm_of(private)
    if algorithm != c.certificates.algorithm:
        reasons.append(f"key {algorithm} -> {c.certificates.algorithm}")
        private = None
    days_left = (cert.not_valid_after_utc - run.now).days
    if days_left < c.certificates.renew_within_days:
        reasons.append(f"expires in {days_left} days")
    elif renew_all:
        reasons.append("renewed (--all)")
    if reasons:
        _issue(run, ident, ca, crt, key, private, "reissued: " + "; ".join(reasons))
    else:
        run.rows.append(Row(ident.id, run.rel(crt), cert.not_valid_after_utc, "kept"))


def _issue(
    run: _Run, ident: Identity, ca: certs.Authority, crt: Path, key: Path, private: keys.PrivateKey | None, action: str
) -> None:
    run.pending.append(_Pending(ident, ca, crt, key, private, action, len(run.rows)))
    run.rows.append(Row(ident.id, run.rel(crt), None, action))


def _sign_pending(c: Cluster, run: _Run) -> None:
    """Generate the missing keys on every core (key generation releases the GIL; it dominates RSA) and sign."""
    algorithm = c.certificates.algorithm
    with ThreadPoolExecutor() as pool:
        fresh = list(pool.map(lambda p: p.private or keys.new_key(algorithm), run.pending))
    for p, private in zip(run.pending, fresh, strict=True):
        cert = certs.issue(p.ca, p.ident.request, private, c.certificates.validity_days, run.now)
        _stage(run, p.crt, p.key, cert, private)
        run.rows[p.row] = Row(p.ident.id, run.rel(p.crt), cert.not_valid_after_utc, p.action)


def _stage(run: _Run, crt: Path, key: Path, cert: x509.Certificate, private: keys.PrivateKey) -> None:
    run.writes[crt] = cert.public_bytes(serialization.Encoding.PEM)
    run.writes[key] = keys.key_pem(private)


def _service_account(c: Cluster, run: _Run) -> None:
    """The service-account signing key pair: its own key, never a CA's. Kept forever once made, because a
    new key invalidates every service-account token in the cluster."""
    key, pub = pki_dir(c) / f"{SA_KEY}.key", pki_dir(c) / f"{SA_KEY}.pub"
    if key.exists():
        try:
            private = keys.load_key(key.read_bytes())
        except (ValueError, TypeError, OSError) as exc:
            run.problems.append(f"{key}: not a readable unencrypted PEM private key ({exc})")
            return
        if not pub.exists() or pub.read_bytes() != keys.public_pem(private):
            run.writes[pub] = keys.public_pem(private)
            run.rows.append(Row("service-account", run.rel(pub), None, "written (public half of sa.key)"))
        run.rows.append(Row("service-account", run.rel(key), None, "kept"))
        return
    private = keys.new_key(c.certificates.algorithm)
    run.writes[key], run.writes[pub] = keys.key_pem(private), keys.public_pem(private)
    run.rows.append(Row("service-account", run.rel(key), None, "created"))


def _kubeconfig(c: Cluster, run: _Run, ident: Identity, ca_file: str) -> None:
    assert ident.kubeconfig is not None
    crt, key = pair_files(pki_dir(c) / ident.file)
    cert_pem = run.writes.get(crt) or crt.read_bytes()
    key_pem = run.writes.get(key) or key.read_bytes()
    ca_pem = trusted(c, ca_file, run.writes)
    content = kubeconfig(c.name, ident.kubeconfig.server, ca_pem, ident.kubeconfig.user, cert_pem, key_pem)
    path = kubeconfig_dir(c) / ident.kubeconfig.file
    expires = x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc
    if path.exists() and path.read_bytes() == content:
        run.rows.append(Row(ident.id, run.rel(path), expires, "kept"))
    else:
        run.writes[path] = content
        run.rows.append(Row(ident.id, run.rel(path), expires, "written"))
