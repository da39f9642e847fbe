"""What plan prints for a changed file: certificates as what they say, secret material never."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives import serialization

from kubefab.pki import certs, keys
from kubefab.playbooks.diffs import file_diff

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def certificate(*dns: str) -> bytes:
    key = keys.new_key("ecdsa-p256")
    ca = certs.Authority(certs.new_ca("kubernetes", key, 3650, NOW), key)
    request = certs.Request("kube-apiserver", dns_names=dns, usages=("server",))
    return certs.issue(ca, request, keys.new_key("ecdsa-p256"), 365, NOW).public_bytes(serialization.Encoding.PEM)


def test_a_changed_certificate_is_shown_as_its_fields() -> None:
    shown = file_diff(
        "~ /etc/kubernetes/pki/apiserver.crt", certificate("kubernetes"), certificate("kubernetes", "api.x")
    )
    assert shown.startswith("~ /etc/kubernetes/pki/apiserver.crt (certificate)\n")
    assert "-DNS SANs: kubernetes" in shown and "+DNS SANs: api.x, kubernetes" in shown
    assert " subject: CN=kube-apiserver" in shown  # unchanged context
    assert "+SHA256: " in shown and " valid: 2026-11-30 23:55 to 2027-12-01 00:00 UTC" in shown
    assert "BEGIN CERTIFICATE" not in shown and "MII" not in shown


def test_a_new_certificate_is_all_additions() -> None:
    shown = file_diff("~ /x.crt", b"", certificate("a"))
    assert "+subject: CN=kube-apiserver" in shown and "+issuer: CN=kubernetes" in shown


def test_private_keys_and_generated_secrets_are_never_shown_even_in_files_not_marked_secret() -> None:
    key = keys.key_pem(keys.new_key("ecdsa-p256"))
    shown = file_diff("~ /etc/kubernetes/pki/apiserver.key", b"", key)
    assert shown == "~ /etc/kubernetes/pki/apiserver.key (new; secret content not shown)"
    config = b"global\n  stats auth admin:s3cretvalue\n"
    shown = file_diff("~ /etc/haproxy/haproxy.cfg", b"global\n", config, ("s3cretvalue",))
    assert shown == "~ /etc/haproxy/haproxy.cfg (changed; secret content not shown)"
    assert "s3cret" not in file_diff("~ /f", config, b"global\n", ("s3cretvalue",))  # removed is shown neither
    assert file_diff("~ /f", b"a\n", b"b\n", secret=True) == "~ /f (changed; secret content not shown)"


def test_other_files_are_a_unified_diff() -> None:
    shown = file_diff("~ /etc/x.conf", b"a\nb\n", b"a\nc\n")
    assert shown.splitlines() == [
        "~ /etc/x.conf",
        "--- ~ /etc/x.conf on the host",
        "+++ kubefab",
        "@@ -1,2 +1,2 @@",
        " a",
        "-b",
        "+c",
    ]
