"""Hostile and careless inventories: each value that once reached a file, a path or a crash is refused where it
enters, with one problem naming the field and saying what is expected. The cases are a table: (what, change,
field, words of the message)."""

from __future__ import annotations

import copy
import datetime as dt
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kubefab.playbooks.inventory import validate_text
from kubefab.playbooks.problems import Problem

EXAMPLE = Path(__file__).parents[2] / "inventory" / "example.yaml"
BASE = yaml.safe_load(EXAMPLE.read_text())
FILE = Path("inv/hostile.yaml")


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


def errors(mutate: Callable[[dict], object]) -> list[Problem]:
    data = copy.deepcopy(BASE)
    mutate(data)
    text = yaml.dump(data, Dumper=_NoAliases, sort_keys=False)
    return [p for p in validate_text(text, FILE).problems if p.severity == "error"]


def setter(*path: str | int, value: object) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
        target[path[-1]] = value

    return mutate


CASES = [
    # Values that reached files or paths unescaped.
    (
        "mirror key as a path",
        setter("registry", "mirrors", value={"../../../../tmp/x": ["https://m.lan"]}),
        "registry.mirrors['../../../../tmp/x']",
        "registry host name",
    ),
    (
        "mirror URL with TOML",
        setter("registry", "mirrors", value={"docker.io": ['https://m"\nskip_verify = true']}),
        "registry.mirrors.docker.io[0]",
        "mirror URL",
    ),
    (
        "mirror URL with a query",
        setter("registry", "mirrors", value={"docker.io": ["https://m.lan/?x=1"]}),
        "registry.mirrors.docker.io[0]",
        "without query",
    ),
    (
        "pause image with TOML",
        setter("registry", "pause_image", value='pause:3.10"\n[plugins.x]'),
        "registry.pause_image",
        "image reference",
    ),
    ("registry URL with a path", setter("registry", "url", value="https://reg.lan/v2"), "registry.url", "https://"),
    (
        "CoreDNS version with YAML",
        setter("versions", "coredns", value="1.12.0\n  securityContext: {privileged: true}"),
        "versions.coredns",
        "release version",
    ),
    ("etcd version as a path", setter("versions", "etcd", value="../../../x"), "versions.etcd", "release version"),
    ("etcd version with a command", setter("versions", "etcd", value="3.6.0;reboot"), "versions.etcd", "release"),
    ("host name with a final newline", setter("hosts", 0, "name", value="k8s-1\n"), "hosts[0].name", "DNS name"),
    ("interface with a final newline", setter("api", "interface", value="eth0\n"), "api.interface", "interface"),
    ("host interface with a space", setter("hosts", 1, "interface", value="eth0 x"), "hosts[1].interface", "interface"),
    ("domain with a newline", setter("network", "domain", value="cluster.local\nx"), "network.domain", "DNS name"),
    ("SAN with a space", setter("api", "extra_sans", value=["api.lan x"]), "api.extra_sans[0]", "DNS name"),
    ("ssh user with a newline", setter("ssh", "user", value="root\n"), "ssh.user", "user name"),
    (
        "token user with a comma",
        setter("api", "token_users", value=[{"name": "a,b"}]),
        "api.token_users[0].name",
        "user name",
    ),
    (
        "token group with a quote",
        setter("api", "token_users", value=[{"name": "a", "groups": ['x"']}]),
        "api.token_users[0].groups[0]",
        "group name",
    ),
    ("NUL byte in a path", setter("cluster_dir", value="clusters/\x00x"), "cluster_dir", "NUL"),
    # Careless values.
    ("port written as true", setter("api", "apiserver_port", value=True), "api.apiserver_port", "integer"),
    ("port written as text", setter("api", "port", value="8443"), "api.port", "integer"),
    ("boolean written as text", setter("api", "unicast", value="yes"), "api.unicast", "boolean"),
    ("host named localhost", setter("hosts", 0, "name", value="localhost"), "hosts[0].name", "localhost"),
    ("host on loopback", setter("hosts", 0, "ip", value="127.0.0.5"), "hosts[0].ip", "loopback"),
    ("host on multicast", setter("hosts", 0, "ip", value="224.0.0.5"), "hosts[0].ip", "multicast"),
    ("host on the broadcast address", setter("hosts", 0, "ip", value="255.255.255.255"), "hosts[0].ip", "broadcast"),
    ("host on a network address", setter("hosts", 0, "ip", value="192.168.10.0/24"), "hosts[0].ip", "network address"),
    ("host on its subnet's broadcast", setter("hosts", 0, "ip", value="192.168.10.255"), "hosts[0].ip", "broadcast"),
    ("host on link-local", setter("hosts", 0, "ip", value="169.254.0.9"), "hosts[0].ip", "link-local"),
    ("host unspecified", setter("hosts", 0, "ip", value="0.0.0.0"), "hosts[0].ip", "unspecified"),
    ("VIP on loopback", setter("api", "vip", value="127.0.0.100"), "api.vip", "loopback"),
    ("VIP on multicast", setter("api", "vip", value="239.1.1.1"), "api.vip", "multicast"),
    ("VIP on the subnet's broadcast", setter("api", "vip", value="192.168.10.255"), "api.vip", "no host can hold"),
    (
        "upstream DNS on loopback",
        setter("network", "upstream_dns", value=["127.0.0.53"]),
        "network.upstream_dns[0]",
        "loopback",
    ),
    ("service CIDR too wide", setter("network", "service_cidr", value="10.64.0.0/10"), "network.service_cidr", "wider"),
    (
        "service CIDR too small",
        lambda d: d["network"].update(service_cidr="10.96.0.0/30", dns_ip="10.96.0.2"),
        "network.service_cidr",
        "too small",
    ),
    ("apiserver on etcd's port", setter("api", "apiserver_port", value=2379), "api.apiserver_port", "etcd"),
    ("HAProxy on the kubelet's port", setter("api", "port", value=10250), "api.port", "kubelet"),
    ("HAProxy in the NodePort range", setter("api", "port", value=30080), "api.port", "kube-proxy"),
    ("stats on the API port", setter("api", "stats", value={"port": 8443}), "api.port", "api.stats.port"),
    ("apiserver on sshd's port", setter("api", "apiserver_port", value=22), "api.apiserver_port", "sshd"),
    ("version with a non-ASCII digit", setter("kubernetes_version", value="1.3\u0665"), "kubernetes_version", "ASCII"),
    ("version unquoted", setter("kubernetes_version", value=1.35), "kubernetes_version", "quotes"),
    (
        "containerd version not a number",
        setter("versions", "containerd", value="latest"),
        "versions.containerd",
        "release version",
    ),
    (
        "too many SANs",
        setter("api", "extra_sans", value=[f"n{i}.lan" for i in range(100)]),
        "api.extra_sans",
        "at most 64",
    ),
    (
        "too many hosts",
        lambda d: d.update(hosts=[{**d["hosts"][0], "name": f"n{i}"} for i in range(501)]),
        "hosts",
        "at most 500",
    ),
]


@pytest.mark.parametrize(("what", "mutate", "field", "words"), CASES, ids=[c[0] for c in CASES])
def test_refused_with_one_problem_naming_the_field(what, mutate, field, words) -> None:
    found = errors(mutate)
    assert [p.field for p in found] == [field], "\n".join(map(str, found))
    message = f"{found[0].found} {found[0].expected}"
    assert words in message, str(found[0])
    assert found[0].file == str(FILE) and found[0].line, str(found[0])
    assert "\n" not in str(found[0]), "a problem is one line"


# Documents refused as a whole, in bounded time and memory.
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
)
DOCUMENTS = [
    ("billion laughs", LAUGHS, "alias"),
    ("recursive alias", "a: &a [*a]\n", "alias"),
    ("an alias anywhere", "name: &n x\nkubernetes_version: *n\n", "alias"),
    ("deep nesting", "[" * 5000 + "]" * 5000, "nested"),
    ("more than 1 MiB", "# " + "x" * (1 << 20) + "\n", "1 MiB"),
    ("not a mapping", "- a\n- b\n", "mapping"),
    ("a python tag", "name: !!python/object/apply:os.system [ls]\n", "YAML"),
]


@pytest.mark.parametrize(("what", "text", "words"), DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_documents_refused_in_bounded_time_and_memory(what, text, words) -> None:
    tracemalloc.start()
    start = time.monotonic()
    found = validate_text(text, FILE).problems
    elapsed, (_, peak) = time.monotonic() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(found) == 1 and words in f"{found[0].found} {found[0].expected}", found
    # Loose bounds (a unit test is no benchmark): what once took a minute and 6 GB must not come near.
    assert elapsed < 5 and peak < 200 << 20, (elapsed, peak)


def test_every_problem_at_once() -> None:
    """Two field errors and two cross-field ones come out of one run: the rules that relate fields run on what
    parsed, with the broken fields left to their defaults."""

    def mutate(d: dict) -> None:
        d["api"]["port"] = "x"  # field
        d["hosts"][2]["interface"] = "a b"  # field
        d["hosts"][1]["ip"] = d["hosts"][0]["ip"]  # cross-field: duplicate address
        d["network"]["dns_ip"] = "10.200.0.1"  # cross-field: outside the service CIDR

    fields = sorted(p.field for p in errors(mutate))
    assert fields == sorted(["api.port", "hosts[2].interface", "hosts[0].ip", "hosts[1].ip", "network.dns_ip"])


def test_a_broken_host_is_left_out_of_the_rules_about_hosts() -> None:
    """A host whose address does not parse is not counted as a missing etcd member, but the other hosts'
    rules still run."""

    def mutate(d: dict) -> None:
        d["hosts"][0]["ip"] = "not-an-ip"
        d["hosts"][2]["ip"] = d["hosts"][1]["ip"]

    fields = sorted(p.field for p in errors(mutate))
    assert fields == ["hosts[0].ip", "hosts[1].ip", "hosts[2].ip"]


# Imported CAs: refused before anything is written, with the reason.
def _ca(tmp: Path, key, *, ca: bool = True, days: int = 3650, start_days: int = 0) -> tuple[str, str]:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imported")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=start_days) - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt, pem = tmp / "ca.crt", tmp / "ca.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(crt), str(pem)


def _rsa(bits: int):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


CA_CASES = [
    ("RSA-1024", lambda t: _ca(t, _rsa(1024)), "key", "RSA key of 1024 bits"),
    ("EC P-192", lambda t: _ca(t, ec.generate_private_key(ec.SECP192R1())), "key", "secp192r1"),
    ("expired", lambda t: _ca(t, ec.generate_private_key(ec.SECP256R1()), days=-1), "cert", "expired"),
    ("not yet valid", lambda t: _ca(t, ec.generate_private_key(ec.SECP256R1()), start_days=30), "cert", "valid only"),
    ("a leaf", lambda t: _ca(t, ec.generate_private_key(ec.SECP256R1()), ca=False), "cert", "CA:FALSE"),
    ("not PEM", lambda t: ((t / "x.crt").write_text("junk"), str(t / "x.crt"), str(t / "x.crt"))[1:], "cert", "PEM"),
    ("missing", lambda t: (str(t / "none.crt"), str(t / "none.key")), "cert", "No such file"),
]


@pytest.mark.parametrize(("what", "make", "part", "words"), CA_CASES, ids=[c[0] for c in CA_CASES])
def test_imported_ca_refused(tmp_path: Path, what, make, part, words) -> None:
    cert, key = make(tmp_path)
    found = errors(setter("certificates", "import_ca", value={"kubernetes": {"cert": cert, "key": key}}))
    assert [p.field for p in found] == [f"certificates.import_ca.kubernetes.{part}"], "\n".join(map(str, found))
    assert words in found[0].found, str(found[0])


def test_imported_ca_that_is_sound_is_accepted(tmp_path: Path) -> None:
    cert, key = _ca(tmp_path, _rsa(2048))
    assert errors(setter("certificates", "import_ca", value={"kubernetes": {"cert": cert, "key": key}})) == []


def test_files_where_directories_belong(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")

    def mutate(d: dict) -> None:
        d["cluster_dir"] = str(tmp_path / "file")
        d["bundle"] = str(tmp_path / "file")

    found = errors(mutate)
    assert sorted(p.field for p in found) == ["bundle", "cluster_dir"] and all("a file" in p.found for p in found)


def test_malformed_bundle_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.yaml").write_text("- a list\n")
    found = errors(setter("bundle", value=str(tmp_path)))
    assert [p.field for p in found] == ["bundle"] and "not a bundle manifest" in found[0].found
