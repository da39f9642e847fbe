"""The validated, frozen cluster model that every plan is computed from.

Field-level rules (types, ranges, unknown keys) live here; rules that relate several fields live in
`playbooks.checks`. `playbooks.inventory.load` runs both and reports every problem at once.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from kubefab.playbooks.shapes import (
    MAX_HOSTS,
    MAX_LIST,
    MAX_MIRRORS,
    MAX_SANS,
    Bool,
    Calendar,
    DnsName,
    Group,
    HostName,
    ImageRef,
    Int,
    Interface,
    KubernetesVersion,
    LocalPath,
    MirrorKey,
    MirrorUrl,
    RegistryUrl,
    San,
    TokenUser,
    User,
    Version,
)

Role = Literal["etcd", "control_plane", "lb", "worker"]
ROLES: tuple[Role, ...] = ("etcd", "control_plane", "lb", "worker")


def _address(value: object) -> object:
    """Addresses must be written as text: pydantic would take `1` or `true` as 0.0.0.1."""
    if not isinstance(value, str):
        raise ValueError(f"an address written as text, like 10.0.0.1 or 10.96.0.0/12 (not a {type(value).__name__})")
    return value


def _unicast(value: ipaddress.IPv4Address | ipaddress.IPv4Interface, info: ValidationInfo) -> object:
    """A host's or the VIP's address must reach one machine from the others: not loopback, multicast,
    link-local, unspecified, reserved or the limited broadcast address. The validation context
    {"allow_loopback": True} lets a whole cluster run on one machine's loopback (the rendered-tools tests)."""
    ip = value.ip if isinstance(value, ipaddress.IPv4Interface) else value
    allowed = ("loopback",) if (info.context or {}).get("allow_loopback") else ()
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError("a unicast address another machine can reach (255.255.255.255 is the broadcast address)")
    for kind in ("loopback", "multicast", "link_local", "unspecified", "reserved"):
        if getattr(ip, f"is_{kind}") and kind not in allowed:
            raise ValueError(f"a unicast address another machine can reach ({ip} is {kind.replace('_', '-')})")
    return value


IPv4 = Annotated[ipaddress.IPv4Address, BeforeValidator(_address)]
UnicastIPv4 = Annotated[IPv4, AfterValidator(_unicast)]
IPv4Net = Annotated[ipaddress.IPv4Network, BeforeValidator(_address)]
HostIPv4 = Annotated[ipaddress.IPv4Interface, BeforeValidator(_address), AfterValidator(_unicast)]
Port = Annotated[Int, Field(ge=1, le=65535)]
NODE_MASK = 24  # the controller-manager's --node-cidr-mask-size: each node's pod range is a /24 of pod_cidr
Days = Annotated[Int, Field(ge=1, le=36500)]


class Strict(BaseModel):
    """Unknown keys are errors (typos must not be ignored); models are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Network(Strict):
    service_cidr: IPv4Net = ipaddress.IPv4Network("10.96.0.0/12")
    pod_cidr: IPv4Net = ipaddress.IPv4Network("10.244.0.0/16")
    dns_ip: IPv4 = ipaddress.IPv4Address("10.96.0.10")
    domain: DnsName = "cluster.local"
    host_prefix: Annotated[Int, Field(ge=8, le=30)] = 24
    # flannel's backend: vxlan (an overlay, works across routed networks) or host-gw (plain routes to each
    # node's pod subnet; every node on one L2 segment).
    flannel_backend: Literal["vxlan", "host-gw"] = "vxlan"
    # Where CoreDNS sends names outside the cluster: unset, the nodes' resolv.conf (the real servers behind a
    # local systemd-resolved stub); a list, those servers; [], nowhere (an air-gapped site: cluster names only).
    upstream_dns: Annotated[tuple[UnicastIPv4, ...], Field(max_length=MAX_LIST)] | None = None

    @property
    def kubernetes_service_ip(self) -> ipaddress.IPv4Address:
        """The first address of the service CIDR: the `kubernetes` Service, in the apiserver's SANs."""
        return self.service_cidr.network_address + 1


class Stats(Strict):
    bind: IPv4 = ipaddress.IPv4Address("127.0.0.1")
    port: Port = 9000


class TokenUserSpec(Strict):
    name: TokenUser
    groups: Annotated[tuple[Group, ...], Field(max_length=MAX_LIST)] = ()


class Api(Strict):
    vip: UnicastIPv4 | None = None
    port: Port = 8443
    apiserver_port: Port = 6443
    interface: Interface = "eth0"
    virtual_router_id: Annotated[Int, Field(ge=1, le=255)] = 51
    unicast: Bool = False
    # An external load balancer (a cloud's, an F5) answers at api.vip:api.port: kubefab installs no HAProxy and
    # no keepalived, and no host has the lb role. Point its health check at https://<control plane>:6443/readyz.
    external: Bool = False
    extra_sans: Annotated[tuple[San, ...], Field(max_length=MAX_SANS)] = ()
    stats: Stats = Stats()
    # The book's static token file (2.3.6), opt-in: each user named here gets a generated random bearer token
    # (kept in the cluster directory, never printed); weaker than certificates, and `kubefab audit` says so.
    token_users: Annotated[tuple[TokenUserSpec, ...], Field(max_length=MAX_LIST)] = ()
    # AlwaysPullImages admission: every pod pulls its images with its own credentials (CIS 1.2.11). Off by
    # default: nodes of an air-gapped cluster run images imported from the bundle, which no registry serves.
    always_pull_images: Bool = False


class Bastion(Strict):
    """A jump host (OpenSSH's ProxyJump): kubefab connects to it and on from there to each host."""

    host: San
    user: User | None = None  # default: the host's ssh.user
    port: Port = 22
    key: LocalPath | None = None  # default: the host's ssh.key


class SSH(Strict):
    user: User = "root"
    port: Port = 22
    key: LocalPath | None = None
    sudo: Bool | None = None  # None: use sudo unless the user is root
    known_hosts: LocalPath | None = None  # set: only host keys recorded there are accepted (strict checking)
    bastion: Bastion | None = None


class HostSSH(Strict):
    # Where SSH connects (a name or another address, as Ansible's ansible_host), when it is not the host's ip,
    # the address the cluster uses. Seen from the bastion when there is one.
    host: San | None = None
    user: User | None = None
    port: Port | None = None
    key: LocalPath | None = None
    sudo: Bool | None = None
    known_hosts: LocalPath | None = None
    bastion: Bastion | None = None


class Host(Strict):
    name: HostName
    ip: HostIPv4
    roles: tuple[Role, ...] = Field(min_length=1, max_length=len(ROLES))
    interface: Interface | None = None
    ssh: HostSSH = HostSSH()

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, roles: tuple[Role, ...]) -> tuple[Role, ...]:
        if len(set(roles)) != len(roles):
            raise ValueError("lists a role twice")
        return roles

    @property
    def address(self) -> ipaddress.IPv4Address:
        return self.ip.ip

    def has(self, role: Role) -> bool:
        return role in self.roles


class ImportedCA(Strict):
    cert: LocalPath
    key: LocalPath


class ImportCAs(Strict):
    kubernetes: ImportedCA | None = None
    etcd: ImportedCA | None = None
    front_proxy: ImportedCA | None = None


class Certificates(Strict):
    algorithm: Literal["ecdsa-p256", "rsa-2048", "rsa-4096"] = "ecdsa-p256"
    authorities: Literal["split", "single"] = "split"
    ca_validity_days: Days = 3650
    validity_days: Days = 365
    renew_within_days: Annotated[Int, Field(ge=0, le=36500)] = 30
    import_ca: ImportCAs = ImportCAs()


# The registries whose images a cluster runs (Kubernetes', Docker Hub, Quay, GitHub's): with a private
# registry, containerd pulls all of them from it.
UPSTREAM_REGISTRIES = ("registry.k8s.io", "docker.io", "quay.io", "ghcr.io")


class Registry(Strict):
    # A private registry (https://host[:port]): containerd pulls every upstream registry's images from it
    # (hosts.toml mirrors) and the sandbox image from it; `kubefab images.push` fills it from the bundle.
    url: Annotated[RegistryUrl, AfterValidator(lambda url: url.rstrip("/"))] | None = None
    ca: LocalPath | None = None  # PEM file of the CA its certificate chains to; default: the cluster's CA
    mirrors: Annotated[
        dict[MirrorKey, Annotated[tuple[MirrorUrl, ...], Field(max_length=MAX_LIST)]], Field(max_length=MAX_MIRRORS)
    ] = {}
    pause_image: ImageRef | None = None  # default: the pause image of the Kubernetes version

    @property
    def host(self) -> str:
        """host[:port] of `url`: the name containerd and image references give the registry."""
        return urllib.parse.urlsplit(self.url or "").netloc

    def all_mirrors(self) -> dict[str, tuple[str, ...]]:
        """Upstream registry -> mirrors tried first: the inventory's, and the private registry for every
        upstream (after the inventory's own mirrors of it)."""
        found = dict(self.mirrors)
        if self.url:
            for upstream in UPSTREAM_REGISTRIES:
                found[upstream] = (*found.get(upstream, ()), self.url)
        return found


class Versions(Strict):
    """Overrides of the component versions the Kubernetes minor pins (for example a lab bundle)."""

    etcd: Version | None = None
    containerd: Version | None = None
    runc: Version | None = None
    cni_plugins: Version | None = None
    crictl: Version | None = None
    coredns: Version | None = None
    calico: Version | None = None
    flannel: Version | None = None


class EtcdSnapshots(Strict):
    """A systemd timer on every etcd member that keeps checked local snapshots of it (`etcd.backup` is the one
    that brings a snapshot to the operator's machine). Twice a day and 14 kept by default, as rke2 does."""

    schedule: Calendar = "*-*-* 00,12:00:00"
    keep: Annotated[Int, Field(ge=1, le=1000)] = 14


class Etcd(Strict):
    snapshots: EtcdSnapshots | None = None  # unset: no timer
    # An even member count needs a larger quorum and survives no more failures than one member fewer: accepted
    # only when asked, as the step of replacing a member (the new one joins, then the old one is removed).
    allow_even_members: bool = False


class Cluster(Strict):
    name: HostName
    kubernetes_version: KubernetesVersion
    network: Network = Network()
    api: Api = Api()
    ssh: SSH = SSH()
    bundle: LocalPath = "bundle"
    cluster_dir: LocalPath | None = None  # default: clusters/<name> beside the inventory file
    container_runtime: Literal["containerd"] = "containerd"
    cni: Literal["calico", "flannel"] = "calico"
    # What the add-ons phase applies: leave out `cni` to bring your own network plugin, `coredns` your own DNS.
    addons: tuple[Literal["rbac", "cni", "coredns"], ...] = ("rbac", "cni", "coredns")
    kube_proxy_mode: Literal["iptables", "ipvs", "nftables"] = "iptables"
    # tune: kube-proxy sizes the kernel's conntrack table and sets its TCP timeouts (its defaults); leave: it
    # touches neither, for hosts whose kernel settings are managed elsewhere or not writable (containers).
    kube_proxy_conntrack: Literal["tune", "leave"] = "tune"
    firewall: Literal["open", "disable", "skip"] = "open"
    cgroup_v1: Literal["refuse", "allow"] = "refuse"
    registry: Registry = Registry()
    etcd: Etcd = Etcd()
    certificates: Certificates = Certificates()
    versions: Versions = Versions()
    hosts: tuple[Host, ...] = Field(min_length=1, max_length=MAX_HOSTS)
    # Where the file was read from: relative paths in it are resolved against its directory.
    source: Path = Field(default=Path("."), exclude=True)

    def with_role(self, role: Role) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.has(role))

    @property
    def etcd_hosts(self) -> tuple[Host, ...]:
        return self.with_role("etcd")

    @property
    def control_plane(self) -> tuple[Host, ...]:
        return self.with_role("control_plane")

    @property
    def lb_hosts(self) -> tuple[Host, ...]:
        return self.with_role("lb")

    @property
    def workers(self) -> tuple[Host, ...]:
        return self.with_role("worker")

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def endpoint_ip(self) -> ipaddress.IPv4Address:
        """Where clients reach the apiservers: the VIP, or the only control-plane host without one."""
        return self.api.vip if self.api.vip is not None else self.control_plane[0].address

    @property
    def endpoint_port(self) -> int:
        return self.api.port if self.api.vip is not None else self.api.apiserver_port

    @property
    def server_url(self) -> str:
        return f"https://{self.endpoint_ip}:{self.endpoint_port}"

    def path(self, value: str) -> Path:
        """A path from the inventory: `~` expanded, relative ones against the inventory's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.source.parent / p).resolve()

    @property
    def dir(self) -> Path:
        """The cluster directory: found from the inventory's location, never from the working directory, so a
        command run from elsewhere finds the same CA (or refuses), instead of creating a new one."""
        return self.path(self.cluster_dir if self.cluster_dir is not None else f"clusters/{self.name}")

    @property
    def bundle_dir(self) -> Path:
        return self.path(self.bundle)

    def ssh_for(self, host: Host) -> SSH:
        """The host's effective SSH settings: its overrides on top of the cluster's defaults. A bastion takes the
        host's user and key unless it names its own."""
        merged = self.ssh.model_dump() | host.ssh.model_dump(exclude_none=True, exclude={"host"})
        if merged["sudo"] is None:
            merged["sudo"] = merged["user"] != "root"
        if merged["bastion"] is not None:
            merged["bastion"] = {"user": merged["user"], "key": merged["key"]} | {
                k: v for k, v in merged["bastion"].items() if v is not None
            }
        return SSH(**merged)

    def ssh_address(self, host: Host) -> str:
        """Where SSH connects to reach `host`: its ssh.host, or its ip."""
        return host.ssh.host or str(host.address)

    def interface_of(self, host: Host) -> str:
        return host.interface or self.api.interface
