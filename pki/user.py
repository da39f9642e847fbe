"""`kubefab kubeconfig --user NAME`: a kubeconfig for a person, with a short-lived client certificate signed by
the cluster's Kubernetes CA, as `kubeadm kubeconfig user` makes one. Nothing is recorded in the cluster
directory: Kubernetes cannot revoke a client certificate, so a short validity is what limits it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubefab.pki import certs, keys
from kubefab.pki.kubeconfig import kubeconfig
from kubefab.pki.store import PKIError, pair_files, pki_dir, trusted
from kubefab.playbooks.model import Cluster

MAX_HOURS = 24 * 365


@dataclass(frozen=True)
class UserKubeconfig:
    content: bytes
    expires: dt.datetime


def problems(user: str, groups: tuple[str, ...], hours: int) -> list[str]:
    """What is wrong with a request, as usage errors."""
    out = [
        f"{flag} {name!r}: not blank, no newline, tab or /"
        for flag, name in (("--user", user), *(("--group", g) for g in groups))
        if not name.strip() or any(ch in name for ch in "\n\r\t/")
    ]
    if not 1 <= hours <= MAX_HOURS:
        out.append(f"--hours {hours}: between 1 and {MAX_HOURS} (a year)")
    return out


def user_kubeconfig(
    c: Cluster, user: str, groups: tuple[str, ...], hours: int, now: dt.datetime | None = None
) -> UserKubeconfig:
    """The kubeconfig of `user` (CN) in `groups` (O), through the cluster's API address, valid `hours` (a request
    `problems` accepts)."""
    crt, key = pair_files(pki_dir(c) / "ca")
    try:
        ca = certs.Authority(x509.load_pem_x509_certificate(crt.read_bytes()), keys.load_key(key.read_bytes()))
    except (OSError, ValueError) as exc:
        raise PKIError(f"{crt.parent}: no usable Kubernetes CA ({exc}); `kubefab pki` creates it") from None
    now = now or dt.datetime.now(dt.UTC)
    private = keys.new_key(c.certificates.algorithm)
    cert = certs.issue(ca, certs.Request(user, groups, usages=("client",)), private, hours / 24, now)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    content = kubeconfig(c.name, c.server_url, trusted(c, "ca"), user, pem, keys.key_pem(private))
    return UserKubeconfig(content, cert.not_valid_after_utc)
