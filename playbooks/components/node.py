"""containerd + runc + CNI plugins, kubelet and kube-proxy on every worker."""

from __future__ import annotations

import shlex

from kubefab.playbooks import paths, ports
from kubefab.playbooks.bundle import sandbox_image
from kubefab.playbooks.component import Component, Port, with_role
from kubefab.playbooks.components import binaries
from kubefab.playbooks.inputs import REMOTE_PKI, Inputs
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Check, Directory, File, Plan
from kubefab.playbooks.render import render

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


CERTS_D = "/etc/containerd/certs.d"


def registry_hosts(c: Cluster) -> tuple[File, ...]:
    """containerd's hosts.toml per registry: every mirrored upstream tries its mirrors first (trusting the
    private registry's CA), and the private registry itself is trusted under its own name. containerd reads
    certs.d at every pull: no restart needed."""
    ca = registry_ca(c)
    files = [
        File(
            paths.join(CERTS_D, registry, "hosts.toml"),
            render(
                "containerd/hosts.toml.j2",
                registry=registry,
                mirrors=mirrors,
                upstream=UPSTREAM.get(registry, f"https://{registry}"),
                private=c.registry.url,
                ca=ca,
            ),
        )
        for registry, mirrors in sorted(c.registry.all_mirrors().items())
    ]
    if c.registry.url:
        files.append(
            File(
                paths.join(CERTS_D, c.registry.host, "hosts.toml"),
                render(
                    "containerd/hosts.toml.j2",
                    registry=c.registry.host,
                    mirrors=(),
                    upstream=c.registry.url,
                    private=c.registry.url,
                    ca=ca,
                ),
            )
        )
        if c.registry.ca:
            files.append(File(REGISTRY_CA, c.path(c.registry.ca).read_bytes()))
    return tuple(files)


def context(inputs: Inputs, host: Host) -> dict[str, object]:
    facts = inputs.facts.get(host.name)
    return inputs.context(
        host,
        pause_image=sandbox_image(inputs.cluster, inputs.stack),
        resolv_conf=RESOLVED_UPSTREAM if facts and facts.resolved_stub else None,
        restrict_oom_score_adj=bool(facts and not facts.cap_sys_resource),
    )


def files(inputs: Inputs, host: Host, service: str, *items: tuple[str, str]) -> tuple[File, ...]:
    """(template, path) each, rendered for `host`, restarting `service` when changed."""
    ctx = context(inputs, host)
    return tuple(File(path, render(template, **ctx), notifies=(service,)) for template, path in items)


def containerd_plan(inputs: Inputs, host: Host) -> Plan:
    return Plan(
        host.name,
        "containerd",
        directories=(Directory("/etc/containerd"), Directory("/opt/cni/bin"), Directory("/etc/cni/net.d")),
        files=(
            *files(
                inputs,
                host,
                "containerd",
                ("containerd/config.toml.j2", "/etc/containerd/config.toml"),
                ("containerd/containerd.service.j2", "/etc/systemd/system/containerd.service"),
            ),
            *registry_hosts(inputs.cluster),
            File("/etc/crictl.yaml", render("containerd/crictl.yaml.j2")),
        ),
    )


def kubelet_plan(inputs: Inputs, host: Host) -> Plan:
    return Plan(
        host.name,
        "kubelet",
        directories=(Directory("/var/lib/kubelet", 0o700), Directory("/etc/kubernetes")),
        files=files(
            inputs,
            host,
            "kubelet",
            ("kubelet/kubelet.j2", "/etc/kubernetes/kubelet"),
            ("kubelet/config.yaml.j2", "/var/lib/kubelet/config.yaml"),
            ("kubelet/kubelet.service.j2", "/etc/systemd/system/kubelet.service"),
        ),
    )


def kube_proxy_plan(inputs: Inputs, host: Host) -> Plan:
    return Plan(
        host.name,
        "kube-proxy",
        directories=(Directory("/var/lib/kube-proxy"), Directory("/etc/kubernetes")),
        files=files(
            inputs,
            host,
            "kube-proxy",
            ("kube-proxy/proxy.j2", "/etc/kubernetes/proxy"),
            ("kube-proxy/config.yaml.j2", "/var/lib/kube-proxy/config.yaml"),
            ("kube-proxy/kube-proxy.service.j2", "/etc/systemd/system/kube-proxy.service"),
        ),
    )


def healthz(name: str, port: int) -> tuple[Check, ...]:
    return (
        Check(f"{name} running", f"systemctl is-active -q {name}", 60),
        Check(f"{name} /healthz", http_ok("127.0.0.1", port, "/healthz"), 60),
    )


def http_ok(host: str, port: int, path: str) -> str:
    """A shell test that `http://host:port/path` answers 200, with bash alone (no curl on minimal hosts)."""
    script = (
        f"exec 3<>/dev/tcp/{host}/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' >&3 "
        "&& head -1 <&3 | grep -q ' 200 '"
    )
    return f"timeout 5 bash -c {shlex.quote(script)}"


CONTAINERD = Component(
    "containerd",
    phase="nodes",
    hosts=with_role("worker"),
    plan=containerd_plan,
    services=("containerd",),
    releases=("containerd", "runc", "cni_plugins", "crictl"),
    binaries=lambda s, arch: (
        *binaries.containerd(s.containerd, arch),
        *binaries.runc(s.runc, arch),
        *binaries.cni_plugins(s.cni_plugins, arch),
        *binaries.crictl(s.crictl, arch),
    ),
    checks=lambda c, host: (Check("containerd running", "systemctl is-active -q containerd", 60),),
)

KUBELET = Component(
    "kubelet",
    phase="nodes",
    hosts=with_role("worker"),
    plan=kubelet_plan,
    services=("kubelet",),
    ports=lambda c: (Port(ports.KUBELET), Port(ports.KUBELET_HEALTHZ, bind=("local",), public=False)),
    packages=lambda c: ("socat",),  # kubectl port-forward through the node
    releases=("kubernetes_server",),
    binaries=lambda s, arch: binaries.kubernetes(s.kubernetes, arch, ("kubelet",)),
    reads=("pki/ca.crt", "pki/kubelet-server", "kubelet.conf"),
    checks=lambda c, host: healthz("kubelet", ports.KUBELET_HEALTHZ),
)

KUBE_PROXY = Component(
    "kube-proxy",
    phase="nodes",
    hosts=with_role("worker"),
    plan=kube_proxy_plan,
    services=("kube-proxy",),
    ports=lambda c: (
        Port(ports.KUBE_PROXY_HEALTHZ),
        Port(ports.KUBE_PROXY_METRICS, bind=("local",), public=False),
        Port(ports.NODE_PORTS[0], last=ports.NODE_PORTS[1], bind=()),
    ),
    packages=lambda c: (
        "conntrack",
        "ipset",
        "iptables",
        *{"ipvs": ("ipvsadm",), "nftables": ("nftables",)}.get(c.kube_proxy_mode, ()),
    ),
    releases=("kubernetes_server",),
    binaries=lambda s, arch: binaries.kubernetes(s.kubernetes, arch, ("kube-proxy",)),
    reads=("kube-proxy.conf",),
    checks=lambda c, host: healthz("kube-proxy", ports.KUBE_PROXY_HEALTHZ),
)
