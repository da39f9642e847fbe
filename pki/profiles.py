"""The table of every identity a cluster needs: subject, SANs, usages, signing CA, local file, path on the
hosts and which hosts receive it. Pure: computed from the cluster model alone.

Subjects follow Kubernetes' RBAC conventions (the "PKI certificates and requirements" page and the
default ClusterRoleBindings): system:kube-controller-manager, system:kube-scheduler, system:kube-proxy,
system:node:<name> in system:nodes, the admin in system:masters.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from kubefab.pki.certs import Request
from kubefab.playbooks.model import Cluster, Host

AuthorityName = Literal["kubernetes", "etcd", "front-proxy"]

REMOTE_PKI = "/etc/kubernetes/pki"
# etcd runs as its own user and reads its member credentials and CA from its own directory, owned by it, so that
# everything under REMOTE_PKI stays root's (CIS 1.1.19).
ETCD_PKI = "/etc/etcd/pki"
LOCALHOST = ipaddress.IPv4Address("127.0.0.1")


@dataclass(frozen=True)
class CA:
    name: AuthorityName
    common_name: str
    file: str  # under the local pki dir, without .crt/.key
    remote: str  # under REMOTE_PKI, without extension
    cert_hosts: tuple[str, ...]
    key_hosts: tuple[str, ...]

    @property
    def signing(self) -> str:
        """Where the holders of its key find the certificate of that key alone: the trusted file next to it holds
        two CAs during a rotation, and the controller-manager's signer reads exactly one."""
        return f"{REMOTE_PKI}/{self.remote}-signing.crt"


@dataclass(frozen=True)
class Kubeconfig:
    file: str  # under the local kubeconfig dir
    remote: str  # absolute path on the hosts
    server: str
    user: str


@dataclass(frozen=True)
class Identity:
    id: str
    authority: AuthorityName
    request: Request
    file: str  # under the local pki dir, without .crt/.key
    remote: str  # under REMOTE_PKI (or absolute), without .crt/.key
    hosts: tuple[str, ...]  # hosts that receive the certificate and its key
    kubeconfig: Kubeconfig | None = None  # delivered as this kubeconfig (credentials embedded) instead
    pem: str | None = None  # delivered as one PEM file (certificate then key) at this path instead

    @property
    def stem(self) -> str:
        """Its absolute path on the hosts, without .crt/.key."""
        return self.remote if self.remote.startswith("/") else f"{REMOTE_PKI}/{self.remote}"


def names(hosts: tuple[Host, ...]) -> tuple[str, ...]:
    return tuple(h.name for h in hosts)


def authorities(c: Cluster) -> tuple[CA, ...]:
    """The three CAs. With `authorities: single` (the book's way) etcd and front-proxy use the Kubernetes CA's
    files: hosts still get etcd/ca.crt and front-proxy-ca.crt, holding the same certificate."""
    everyone = names(c.hosts)
    cp = names(c.control_plane)
    etcd_users = tuple(h.name for h in c.hosts if h.has("etcd") or h.has("control_plane"))
    single = c.certificates.authorities == "single"
    return (
        # The controller-manager signs CSRs (kubelet serving/client rotation), so the key goes to the control
        # plane; the etcd and front-proxy CA keys never leave the operator's machine.
        CA("kubernetes", "kubernetes", "ca", "ca", everyone, cp),
        CA("etcd", "kubernetes" if single else "etcd-ca", "ca" if single else "etcd/ca", "etcd/ca", etcd_users, ()),
        CA(
            "front-proxy",
            "kubernetes" if single else "front-proxy-ca",
            "ca" if single else "front-proxy-ca",
            "front-proxy-ca",
            cp,
            (),
        ),
    )


def identities(c: Cluster) -> list[Identity]:
    cp = names(c.control_plane)
    local_api = f"https://127.0.0.1:{c.api.apiserver_port}"
    out = [
        Identity("apiserver", "kubernetes", _apiserver_request(c), "apiserver", "apiserver", cp),
        Identity(
            "apiserver-kubelet-client",
            "kubernetes",
            Request("kube-apiserver-kubelet-client"),
            "apiserver-kubelet-client",
            "apiserver-kubelet-client",
            cp,
        ),
        Identity(
            "apiserver-etcd-client",
            "etcd",
            Request("kube-apiserver-etcd-client"),
            "apiserver-etcd-client",
            "apiserver-etcd-client",
            cp,
        ),
        Identity(
            "front-proxy-client",
            "front-proxy",
            Request("front-proxy-client"),
            "front-proxy-client",
            "front-proxy-client",
            cp,
        ),
        # HAProxy's /readyz checks authenticate with this (the apiservers refuse anonymous requests).
        Identity(
            "haproxy-healthcheck",
            "kubernetes",
            Request("kubefab:haproxy-healthcheck"),
            "haproxy-healthcheck",
            "haproxy-healthcheck",
            names(c.lb_hosts),
            pem="/etc/haproxy/kubefab-healthcheck.pem",
        ),
        Identity(
            "etcd-healthcheck-client",
            "etcd",
            Request("kube-etcd-healthcheck-client"),
            "etcd/healthcheck-client",
            "etcd/healthcheck-client",
            names(c.etcd_hosts),
        ),
        # The admin goes through the VIP like any operator; controller-manager and scheduler talk to the
        # apiserver on their own host so they keep working while the load balancer is down.
        Identity(
            "admin",
            "kubernetes",
            Request("kubernetes-admin", ("system:masters",)),
            "admin",
            "admin",
            cp,
            Kubeconfig("admin.conf", "/etc/kubernetes/admin.conf", c.server_url, "kubernetes-admin"),
        ),
        Identity(
            "controller-manager",
            "kubernetes",
            Request("system:kube-controller-manager"),
            "controller-manager",
            "controller-manager",
            cp,
            Kubeconfig(
                "controller-manager.conf",
                "/etc/kubernetes/controller-manager.conf",
                local_api,
                "system:kube-controller-manager",
            ),
        ),
        Identity(
            "scheduler",
            "kubernetes",
            Request("system:kube-scheduler"),
            "scheduler",
            "scheduler",
            cp,
            Kubeconfig("scheduler.conf", "/etc/kubernetes/scheduler.conf", local_api, "system:kube-scheduler"),
        ),
        Identity(
            "kube-proxy",
            "kubernetes",
            Request("system:kube-proxy"),
            "kube-proxy",
            "kube-proxy",
            names(c.workers),
            Kubeconfig("kube-proxy.conf", "/etc/kubernetes/kube-proxy.conf", c.server_url, "system:kube-proxy"),
        ),
    ]
    for h in c.etcd_hosts:
        member = Request(h.name, (), (h.name, "localhost"), (h.address, LOCALHOST), ("server", "client"))
        out.append(
            Identity(
                f"etcd-server/{h.name}", "etcd", member, f"hosts/{h.name}/etcd-server", f"{ETCD_PKI}/server", (h.name,)
            )
        )
        out.append(
            Identity(f"etcd-peer/{h.name}", "etcd", member, f"hosts/{h.name}/etcd-peer", f"{ETCD_PKI}/peer", (h.name,))
        )
    for h in c.workers:
        node = f"system:node:{h.name}"
        out.append(
            Identity(
                f"kubelet-client/{h.name}",
                "kubernetes",
                Request(node, ("system:nodes",)),
                f"hosts/{h.name}/kubelet-client",
                "kubelet-client",
                (h.name,),
                Kubeconfig(f"kubelet-{h.name}.conf", "/etc/kubernetes/kubelet.conf", c.server_url, node),
            )
        )
        out.append(
            Identity(
                f"kubelet-server/{h.name}",
                "kubernetes",
                Request(node, ("system:nodes",), (h.name,), (h.address,), ("server",)),
                f"hosts/{h.name}/kubelet-server",
                "kubelet-server",
                (h.name,),
            )
        )
    return out


def _apiserver_request(c: Cluster) -> Request:
    domain = c.network.domain
    dns = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{domain}",
        "localhost",
        *names(c.control_plane),
    ]
    ips = [c.network.kubernetes_service_ip, LOCALHOST, *(h.address for h in c.control_plane)]
    if c.api.vip is not None:
        ips.append(c.api.vip)
    for san in c.api.extra_sans:
        try:
            ips.append(ipaddress.IPv4Address(san))
        except ValueError:
            dns.append(san)
    return Request("kube-apiserver", (), tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(ips)), ("server",))
