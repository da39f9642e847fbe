"""Phase `certificates`: each host receives only the files its roles need. The Kubernetes CA key goes to
control-plane hosts only (the controller-manager signs CSRs); the etcd and front-proxy CA keys stay on the
operator's machine."""

from __future__ import annotations

from pki.profiles import authorities, identities
from pki.store import SA_KEY
from playbooks.model import Cluster, Host
from playbooks.plan import File, Plan
from playbooks.plans.inputs import REMOTE_PKI, Inputs

# Which services read a file (by its path under /etc/kubernetes): they restart when it changes.
CONSUMERS: dict[str, tuple[str, ...]] = {
    "pki/ca.crt": ("kube-apiserver", "kube-controller-manager", "kubelet"),
    "pki/ca.key": ("kube-controller-manager",),
    "pki/etcd/ca.crt": ("etcd", "kube-apiserver"),
    "pki/etcd/server": ("etcd",),
    "pki/etcd/peer": ("etcd",),
    "pki/front-proxy-ca.crt": ("kube-apiserver", "kube-controller-manager"),
    "pki/apiserver": ("kube-apiserver",),
    "pki/apiserver-kubelet-client": ("kube-apiserver",),
    "pki/apiserver-etcd-client": ("kube-apiserver",),
    "pki/front-proxy-client": ("kube-apiserver",),
    "pki/sa.pub": ("kube-apiserver",),
    "pki/sa.key": ("kube-apiserver", "kube-controller-manager"),
    "pki/kubelet-server": ("kubelet",),
    "controller-manager.conf": ("kube-controller-manager",),
    "scheduler.conf": ("kube-scheduler",),
    "kubelet.conf": ("kubelet",),
    "kube-proxy.conf": ("kube-proxy",),
    "/etc/haproxy/kubefab-healthcheck.pem": ("haproxy",),
}
# etcd runs as its own user: its member keys must be readable by it.
ETCD_OWNED = ("pki/etcd/server", "pki/etcd/peer")


def services_on(host: Host) -> set[str]:
    out: set[str] = set()
    if host.has("etcd"):
        out |= {"etcd"}
    if host.has("control_plane"):
        out |= {"kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    if host.has("lb"):
        out |= {"haproxy", "keepalived"}
    if host.has("worker"):
        out |= {"containerd", "kubelet", "kube-proxy"}
    return out


def _file(host: Host, path: str, content: bytes, private: bool) -> File:
    key = path.removeprefix("/etc/kubernetes/")
    stem = key.rsplit(".", 1)[0]
    notifies = tuple(s for s in CONSUMERS.get(key, CONSUMERS.get(stem, ())) if s in services_on(host))
    owner = "etcd" if stem in ETCD_OWNED else "root"
    return File(path, content, 0o600 if private else 0o644, owner, owner, notifies, secret=private)


def plan(inputs: Inputs, host: Host) -> Plan:
    c, pki = inputs.cluster, inputs.pki
    files: list[File] = []
    for ca in authorities(c):
        if host.name in ca.cert_hosts:
            files.append(_file(host, f"{REMOTE_PKI}/{ca.remote}.crt", pki[f"pki/{ca.file}.crt"], False))
        if host.name in ca.key_hosts:
            files.append(_file(host, f"{REMOTE_PKI}/{ca.remote}.key", pki[f"pki/{ca.file}.key"], True))
    for ident in identities(c):
        if host.name not in ident.hosts:
            continue
        if ident.kubeconfig is not None:
            files.append(_file(host, ident.kubeconfig.remote, pki[f"kubeconfig/{ident.kubeconfig.file}"], True))
        elif ident.pem is not None:
            pem = pki[f"pki/{ident.file}.crt"] + pki[f"pki/{ident.file}.key"]
            files.append(_file(host, ident.pem, pem, True))
        else:
            files.append(_file(host, f"{REMOTE_PKI}/{ident.remote}.crt", pki[f"pki/{ident.file}.crt"], False))
            files.append(_file(host, f"{REMOTE_PKI}/{ident.remote}.key", pki[f"pki/{ident.file}.key"], True))
    if host.has("control_plane"):
        files.append(_file(host, f"{REMOTE_PKI}/{SA_KEY}.key", pki[f"pki/{SA_KEY}.key"], True))
        files.append(_file(host, f"{REMOTE_PKI}/{SA_KEY}.pub", pki[f"pki/{SA_KEY}.pub"], False))
    # Member keys are owned by the etcd user, which must exist before they are installed.
    return Plan(host.name, "certificates", files=tuple(files), users=("etcd",) if host.has("etcd") else ())


def leaves(c: Cluster, host: Host) -> list[tuple[str, str]]:
    """(certificate, the CA it must verify against) for every leaf delivered as a file to `host`."""
    ca_remote = {ca.name: f"{REMOTE_PKI}/{ca.remote}.crt" for ca in authorities(c)}
    return [(f"{REMOTE_PKI}/{i.remote}.crt", ca_remote[i.authority]) for i in identities(c)
            if host.name in i.hosts and i.kubeconfig is None and i.pem is None]
