"""Generated secrets (Secrets encryption key, VRRP password, HAProxy stats password, the bearer tokens of the
inventory's api.token_users): created once in the cluster directory beside the PKI (0600) and reused, so
re-rendering never changes them. A user taken out of the inventory loses its token."""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from kubefab.pki.store import write_private
from kubefab.playbooks.model import Cluster

FILE = "secrets.yaml"


@dataclass(frozen=True)
class Secrets:
    encryption_key: str  # base64 of 32 random bytes (secretbox)
    vrrp_password: str  # keepalived PASS authentication uses at most 8 characters
    stats_password: str
    tokens: Mapping[str, str] = field(default_factory=dict)  # user -> bearer token (api.token_users)

    def values(self) -> tuple[str, ...]:
        """Every secret value: what a diff must never show."""
        return (self.encryption_key, self.vrrp_password, self.stats_password, *self.tokens.values())


def generate(users: tuple[str, ...] = ()) -> Secrets:
    alphabet = string.ascii_letters + string.digits
    return Secrets(
        encryption_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        vrrp_password="".join(secrets.choice(alphabet) for _ in range(8)),
        stats_password="".join(secrets.choice(alphabet) for _ in range(24)),
        tokens={user: secrets.token_hex(32) for user in users},
    )


def path(c: Cluster) -> Path:
    return c.dir / FILE


class SecretsError(Exception):
    pass


@dataclass(frozen=True)
class Stored:
    """The cluster's secrets, and the file content to write when some were generated (None: the file is up to
    date)."""

    secrets: Secrets
    write: bytes | None

    def commit(self, c: Cluster) -> Secrets:
        if self.write is not None:
            write_private(path(c), self.write)
        return self.secrets


def assess(c: Cluster) -> Stored:
    """The cluster's secrets, generating in memory only the ones not yet on disk. A damaged file is an error,
    never overwritten: it holds the key Secrets are encrypted with."""
    file = path(c)
    try:
        stored = yaml.safe_load(file.read_text()) if file.exists() else {}
    except (OSError, yaml.YAMLError) as exc:
        raise SecretsError(f"{file}: unreadable ({exc}); restore it from a backup") from None
    tokens = stored.get("tokens", {}) if isinstance(stored, dict) else None
    if (
        not isinstance(stored, dict)
        or not all(isinstance(v, str) for k, v in stored.items() if k != "tokens")
        or not isinstance(tokens, dict)
        or not all(isinstance(v, str) for v in tokens.values())
    ):
        raise SecretsError(f"{file}: expected a mapping of secret names to strings; restore it from a backup")
    fresh = asdict(generate(tuple(u.name for u in c.api.token_users)))
    merged = {k: stored.get(k) or fresh[k] for k in fresh if k != "tokens"}
    if fresh["tokens"]:
        merged["tokens"] = {user: tokens.get(user) or token for user, token in fresh["tokens"].items()}
    return Stored(Secrets(**merged), yaml.safe_dump(merged).encode() if merged != stored else None)


def ensure(c: Cluster) -> Secrets:
    """The cluster's secrets, generating (and writing) only the ones not yet on disk."""
    return assess(c).commit(c)
