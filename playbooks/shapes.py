"""The shape of every text value an inventory can hold, checked where it enters.

Each shape is a whole-string match (`re.fullmatch` over ASCII: `$` would accept a final newline and `\\d` any
script's digits) of the narrowest form the value has. What passes holds no quote, space, newline, `%`, `$`,
`#` or path separator it does not need, so it cannot change the meaning of the file it is written into;
`playbooks.escape` still writes each value with its own format's escaping.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

# RFC 1123 label: what a node name and a certificate DNS SAN can hold.
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DNS_NAME = rf"{LABEL}(?:\.{LABEL})*"
IPV4 = r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# A registry as image references and containerd's certs.d name it: a DNS name or an IPv4 address, a port.
REGISTRY_HOST = rf"(?:{DNS_NAME}|{IPV4})(?::{PORT})?"
MIRROR_KEY = rf"{REGISTRY_HOST}|_default"  # a certs.d directory: a registry, or containerd's fallback
# The OCI distribution reference grammar, lowercase repository path, tag and/or sha256 digest.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
IMAGE = (
    rf"(?:{REGISTRY_HOST}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
_URL_PATH = r"(?:/(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*))*/?"
MIRROR_URL = rf"https?://{REGISTRY_HOST}{_URL_PATH}"
REGISTRY_URL = rf"https://{REGISTRY_HOST}/?"
INTERFACE = r"(?!\.\.?\Z)[A-Za-z0-9_.-]{1,15}"  # the kernel's dev_valid_name, without ':' aliases
VERSION = r"[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}(?:-(?:alpha|beta|rc)\.[0-9]{1,3})?"
KUBERNETES_VERSION = r"v?[0-9]{1,4}\.[0-9]{1,4}(?:\.[0-9]{1,4})?"
USER = r"[a-z_][a-z0-9_-]{0,31}"
TOKEN_USER = r"[a-z0-9](?:[a-z0-9:._@-]{0,62}[a-z0-9])?"
GROUP = r"[a-z0-9](?:[a-z0-9:._-]{0,62}[a-z0-9])?"
# A systemd OnCalendar expression's characters (daily, Mon..Fri *-*-* 03:00, *-*-* 00,12:00:00): systemd parses
# the rest; no quote, newline or '%' reaches a unit file.
CALENDAR = r"[A-Za-z0-9*,.:/~ +-]{1,100}"

# Bounds on what one inventory can ask for, so any input is refused in bounded time and memory.
MAX_HOSTS = 500
MAX_SANS = 64
MAX_MIRRORS = 32
MAX_LIST = 16


def _text(value: object) -> object:
    if not isinstance(value, str):
        kind = "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"
        raise ValueError(f"text (found {kind}; write it in quotes if it is meant as text)")
    return value


def shape(regex: str, what: str, max_length: int = 253) -> list[object]:
    """Validators for a str field that must wholly match `regex`; `what` is said when it does not."""
    compiled = re.compile(regex, re.ASCII)

    def check(value: str) -> str:
        if len(value) > max_length or not compiled.fullmatch(value):
            raise ValueError(what)
        return value

    return [BeforeValidator(_text), AfterValidator(check)]


def _not_localhost(value: str) -> str:
    if value == "localhost" or value.endswith(".localhost"):
        raise ValueError("a name other than localhost: it resolves to the loopback address on every host")
    return value


def _local_path(value: str) -> str:
    if "\x00" in value or "\n" in value or len(value) > 4096:
        raise ValueError("a file path (no NUL byte or newline, at most 4096 characters)")
    return value


_DNS_WHAT = (
    "a lowercase DNS name (RFC 1123: a-z, 0-9, '-', '.'; each label 1-63 characters, not starting or ending "
    "with '-'), as Kubernetes node names and certificate SANs require"
)
DnsName = Annotated[str, *shape(DNS_NAME, _DNS_WHAT)]
# A certificate's SAN, or where SSH connects: an address or a name.
San = Annotated[str, *shape(rf"{IPV4}|{DNS_NAME}", "an IPv4 address or " + _DNS_WHAT)]
HostName = Annotated[DnsName, AfterValidator(_not_localhost)]
Interface = Annotated[str, *shape(INTERFACE, "a network interface name (1-15 of A-Z a-z 0-9 _ . -)", 15)]
RegistryHost = Annotated[
    str, *shape(REGISTRY_HOST, "a registry host name as images name it: a lowercase DNS name or IPv4, :port")
]
MirrorKey = Annotated[
    str,
    *shape(MIRROR_KEY, "a registry host name as images name it (e.g. docker.io, reg.lan:5000)"),
]
MirrorUrl = Annotated[
    str, *shape(MIRROR_URL, "a mirror URL: http(s)://<host>[:<port>][/path] without query, user or '..'", 512)
]
RegistryUrl = Annotated[str, *shape(REGISTRY_URL, "https://<host>[:<port>] (containerd verifies it with its CA)", 300)]
ImageRef = Annotated[
    str, *shape(IMAGE, "an image reference like registry.k8s.io/pause:3.10 (lowercase repository, tag)", 512)
]
Version = Annotated[str, *shape(VERSION, "a release version like 1.2.3 (ASCII digits, optionally -rc.N)", 32)]
KubernetesVersion = Annotated[
    str, *shape(KUBERNETES_VERSION, 'a version in quotes, like "1.37" or "1.37.2" (ASCII digits)', 16)
]
User = Annotated[str, *shape(USER, "a Unix user name (a-z 0-9 _ -, at most 32 characters)", 32)]
TokenUser = Annotated[str, *shape(TOKEN_USER, "a user name (a-z 0-9 : . _ @ -, at most 64 characters)", 64)]
Group = Annotated[str, *shape(GROUP, "a group name (a-z 0-9 : . _ -, at most 64 characters)", 64)]
LocalPath = Annotated[str, BeforeValidator(_text), AfterValidator(_local_path)]
Calendar = Annotated[
    str,
    *shape(CALENDAR, "a systemd OnCalendar expression, like daily or *-*-* 00,12:00:00 (A-Z 0-9 * , . : / ~ + -)", 100),
]
# Integers and booleans as YAML writes them: `true` is not port 1, "6443" is not a number.
Int = Annotated[int, Field(strict=True)]
Bool = Annotated[bool, Field(strict=True)]
