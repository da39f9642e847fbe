"""Private keys: generation, PEM encoding and matching against certificates."""

from __future__ import annotations

from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

Algorithm = Literal["ecdsa-p256", "rsa-2048", "rsa-4096"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_key(algorithm: Algorithm) -> PrivateKey:
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    bits = int(algorithm.removeprefix("rsa-"))
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def algorithm_of(key: object) -> str:
    """The inventory's name for a key's (or public key's) algorithm, e.g. 'ecdsa-p256'."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {"secp256r1": "ecdsa-p256"}.get(key.curve.name, f"ecdsa-{key.curve.name}")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    return type(key).__name__


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return key


def matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
