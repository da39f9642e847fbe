"""Phase `nodes`: containerd + runc + CNI plugins, kubelet and kube-proxy on every worker."""

from __future__ import annotations

from playbooks.bundle import sandbox_image
from playbooks.model import Cluster, Host
from playbooks.plan import Directory, File, Plan
from playbooks.plans import binaries
from playbooks.plans.inputs import REMOTE_PKI, Inputs
from playbooks.render import render

# Where a registry's own endpoint is when it is not https://<name> (Docker Hub's historical quirk).
UPSTREAM = {"docker.io": "https://registry-1.docker.io"}
# systemd-resolved's list of the real name servers (its stub at 127.0.0.53 is unreachable from pods).
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"


# The CA of a private registry whose certificate is not from the cluster's CA (`registry.ca`).
REGISTRY_CA = "/etc/containerd/registry-ca.crt"


def registry_ca(c: Cluster) -> str | None:
    """Where nodes find the CA the private registry's certificate chains to."""
    if not c.registry.url:
        return None
    return REGISTRY_CA if c.registry.ca else f"{REMOTE_PKI}/ca.crt"


def registry_hosts(c: Cluster) -> tuple[File, ...]:
    """containerd's hosts.toml per registry: every mirrored upstream tries its mirrors first (trusting the
    private registry's CA), and the private registry itself is trusted under its own name. containerd reads
    certs.d at every pull: no restart needed."""
    ca = registry_ca(c)
    files = [File(f"/etc/containerd/certs.d/{registry}/hosts.toml",
                  render("containerd/hosts.toml.j2", registry=registry, mirrors=mirrors,
                         upstream=UPSTREAM.get(registry, f"https://{registry}"), private=c.registry.url, ca=ca))
             for registry, mirrors in sorted(c.registry.all_mirrors().items())]
    if c.registry.url:
        files.append(File(f"/etc/containerd/certs.d/{c.registry.host}/hosts.toml",
                          render("containerd/hosts.toml.j2", registry=c.registry.host, mirrors=(),
                                 upstream=c.registry.url, private=c.registry.url, ca=ca)))
        if c.registry.ca:
            files.append(File(REGISTRY_CA, c.path(c.registry.ca).read_bytes()))
    return tuple(files)


def plan(inputs: Inputs, host: Host) -> Plan | None:
    if not host.has("worker"):
        return None
    c, s, arch = inputs.cluster, inputs.stack, inputs.arch
    facts = inputs.facts.get(host.name)
    ctx = inputs.context(host, pause_image=sandbox_image(c, s),
                         resolv_conf=RESOLVED_UPSTREAM if facts and facts.resolved_stub else None,
                         restrict_oom_score_adj=bool(facts and not facts.cap_sys_resource))

    def conf(template: str, path: str, service: str) -> File:
        return File(path, render(template, **ctx), notifies=(service,))

    return Plan(
        host.name,
        "nodes",
        directories=(
            Directory("/etc/containerd"), Directory("/opt/cni/bin"), Directory("/etc/cni/net.d"),
            Directory("/var/lib/kubelet", 0o700), Directory("/var/lib/kube-proxy"), Directory("/etc/kubernetes"),
        ),
        binaries=binaries.for_node(s, arch),
        files=(
            conf("containerd/config.toml.j2", "/etc/containerd/config.toml", "containerd"),
            conf("containerd/containerd.service.j2", "/etc/systemd/system/containerd.service", "containerd"),
            *registry_hosts(c),
            File("/etc/crictl.yaml", render("containerd/crictl.yaml.j2")),
            conf("kubelet/kubelet.j2", "/etc/kubernetes/kubelet", "kubelet"),
            conf("kubelet/config.yaml.j2", "/var/lib/kubelet/config.yaml", "kubelet"),
            conf("kubelet/kubelet.service.j2", "/etc/systemd/system/kubelet.service", "kubelet"),
            conf("kube-proxy/proxy.j2", "/etc/kubernetes/proxy", "kube-proxy"),
            conf("kube-proxy/config.yaml.j2", "/var/lib/kube-proxy/config.yaml", "kube-proxy"),
            conf("kube-proxy/kube-proxy.service.j2", "/etc/systemd/system/kube-proxy.service", "kube-proxy"),
        ),
        services=("containerd", "kubelet", "kube-proxy"),
    )
