"""A CA rotation's state, kept in the cluster directory's files so that every step can be run again:

- `pki/<ca>.next.crt` + `.key`: a new CA the hosts are being made to trust next to the current one (stage "trust");
- `pki/<ca>.prev.crt`: the CA being replaced, still trusted while the leaves it signed are replaced (stage
  "reissue"); `pki/<ca>.crt` is then the new CA, which signs every leaf `assess` reissues;
- neither: no rotation under way.

A CA is never deleted: the one replaced is copied to `pki/retired/` (certificate and key) before anything else.
Hosts and kubeconfigs are given the trust bundle (the current CA first, then the other one) wherever they were
given the CA certificate (pki.store.trust)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubefab.pki import certs, keys
from kubefab.pki.profiles import CA
from kubefab.pki.store import RETIRED, pair_files, pki_dir, write_private
from kubefab.playbooks.model import Cluster

Stage = Literal["idle", "trust", "reissue"]


def _base(c: Cluster, ca: CA, suffix: str = "") -> Path:
    return pki_dir(c) / f"{ca.file}{suffix}"


def stage(c: Cluster, ca: CA) -> Stage:
    if pair_files(_base(c, ca, ".next"))[0].exists():
        return "trust"
    if pair_files(_base(c, ca, ".prev"))[0].exists():
        return "reissue"
    return "idle"


def begin(c: Cluster, ca: CA, now: dt.datetime | None = None) -> None:
    """Stage "trust": a new CA, same name and algorithm, to be trusted alongside the current one."""
    crt, key = pair_files(_base(c, ca, ".next"))
    private = keys.new_key(c.certificates.algorithm)
    cert = certs.new_ca(ca.common_name, private, c.certificates.ca_validity_days, now or dt.datetime.now(dt.UTC))
    write_private(key, keys.key_pem(private))
    write_private(crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def swap(c: Cluster, ca: CA) -> None:
    """Stage "reissue": the new CA becomes the CA, the old one stays trusted as `.prev`. Safe to run again after a
    crash at any point: the old pair is archived first and each file is replaced atomically."""
    crt, key = pair_files(_base(c, ca))
    next_crt, next_key = pair_files(_base(c, ca, ".next"))
    old = x509.load_pem_x509_certificate(crt.read_bytes())
    incoming = x509.load_pem_x509_certificate(next_crt.read_bytes())
    archive = pki_dir(c) / RETIRED / f"{ca.file.replace('/', '-')}-{old.serial_number:x}"
    retired_crt, retired_key = pair_files(archive)
    # A crash may have left the new key in place already (the certificate is replaced last).
    if not next_key.exists() and not keys.matches(incoming, keys.load_key(key.read_bytes())):
        raise ValueError(f"{next_crt}: its key is neither {next_key} nor {key}; restore one of them")
    if next_key.exists():
        write_private(retired_key, key.read_bytes())
    write_private(retired_crt, crt.read_bytes(), 0o644)
    write_private(_base(c, ca, ".prev.crt"), crt.read_bytes(), 0o644)
    if next_key.exists():
        os.replace(next_key, key)
    os.replace(next_crt, crt)


def finish(c: Cluster, ca: CA) -> None:
    """Back to idle: the old CA is no longer trusted (its copy under pki/retired/ stays)."""
    _base(c, ca, ".prev.crt").unlink(missing_ok=True)
