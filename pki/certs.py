"""Certificate authorities and leaf certificates as `cryptography` objects. Pure: no files."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubefab.pki.keys import PrivateKey

# Issued certificates start a little in the past so hosts with slightly slow clocks accept them.
BACKDATE = dt.timedelta(minutes=5)

USAGE_OIDS = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: PrivateKey


@dataclass(frozen=True)
class Request:
    """What a leaf certificate must say; compared field by field with an existing one to decide on reissue."""

    common_name: str
    organizations: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[ipaddress.IPv4Address, ...] = ()
    usages: tuple[str, ...] = ("client",)


def name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_ca(common_name: str, key: PrivateKey, days: int, now: dt.datetime) -> x509.Certificate:
    subject = name(common_name)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(key, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def issue(ca: Authority, request: Request, key: PrivateKey, days: float, now: dt.datetime) -> x509.Certificate:
    """A leaf for `request`, valid `days` (a fraction for hours) but never beyond its CA."""
    not_after = min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(request.common_name, request.organizations))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([USAGE_OIDS[u] for u in request.usages]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in request.dns_names]
    sans += [x509.IPAddress(ip) for ip in request.ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _key_usage(key: PrivateKey, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey) and not ca,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def describe(cert: x509.Certificate) -> Request:
    """What an existing certificate says, in the same terms as a Request."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(ip for ip in san.get_values_for_type(x509.IPAddress) if isinstance(ip, ipaddress.IPv4Address))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        usages = tuple(u for u, oid in USAGE_OIDS.items() if oid in eku)
    except x509.ExtensionNotFound:
        usages = ()
    return Request(
        common_name=str(cn[0].value) if cn else "",
        organizations=tuple(str(o.value) for o in orgs),
        dns_names=dns,
        ip_addresses=ips,
        usages=usages,
    )


def differences(cert: x509.Certificate, request: Request) -> list[str]:
    """Which parts of `cert` no longer say what `request` asks (order of SANs does not matter)."""
    have = describe(cert)
    out = []
    if have.common_name != request.common_name:
        out.append(f"CN {have.common_name!r} -> {request.common_name!r}")
    if sorted(have.organizations) != sorted(request.organizations):
        out.append(f"O {list(have.organizations)} -> {list(request.organizations)}")
    if set(have.dns_names) != set(request.dns_names):
        out.append(f"DNS SANs {sorted(set(have.dns_names) ^ set(request.dns_names))} changed")
    if set(have.ip_addresses) != set(request.ip_addresses):
        out.append(f"IP SANs {sorted(str(i) for i in set(have.ip_addresses) ^ set(request.ip_addresses))} changed")
    if set(have.usages) != set(request.usages):
        out.append(f"usages {list(have.usages)} -> {list(request.usages)}")
    return out


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
