"""SSH keys the lab generates: the operator's lab key and fresh host keys for every host."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519


@dataclass(frozen=True)
class SSHKey:
    private: bytes  # OpenSSH private key file
    public: str  # one authorized_keys / known_hosts line body: "<type> <base64>"


def _serialize(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> SSHKey:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return SSHKey(private, public.decode())


def new_ed25519() -> SSHKey:
    return _serialize(ed25519.Ed25519PrivateKey.generate())


def new_host_keys() -> dict[str, SSHKey]:
    """Host keys by sshd file suffix (ssh_host_<kind>_key): the two every OpenSSH client accepts."""
    return {"ed25519": new_ed25519(), "ecdsa": _serialize(ec.generate_private_key(ec.SECP256R1()))}


def known_hosts(entries: Iterable[tuple[Iterable[str], SSHKey]]) -> str:
    """known_hosts lines: each key under all the names (and IPs) its host answers to."""
    return "".join(f"{','.join(names)} {key.public}\n" for names, key in entries)


def ensure_key(path: Path, comment: str) -> str:
    """The lab's ed25519 key at `path` (created 0600 if missing); returns its public line."""
    if not path.exists():
        key = new_ed25519()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600)
        path.write_bytes(key.private)
        path.with_suffix(".pub").write_text(f"{key.public} {comment}\n")
    return path.with_suffix(".pub").read_text().strip()
