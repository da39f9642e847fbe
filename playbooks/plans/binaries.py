"""Which executables each component takes from the bundle, and where they are inside the release files."""

from __future__ import annotations

from playbooks.model import Host
from playbooks.plan import Binary
from playbooks.versions import Stack, release

KUBE_BIN = "/usr/local/bin"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def for_etcd(s: Stack, arch: str) -> tuple[Binary, ...]:
    return etcd(s.etcd, arch, ("etcd",))


def for_control_plane(s: Stack, arch: str) -> tuple[Binary, ...]:
    return kubernetes(s.kubernetes, arch, (*CONTROL_PLANE, "kubectl"))


def for_node(s: Stack, arch: str) -> tuple[Binary, ...]:
    return (*containerd(s.containerd, arch), *runc(s.runc, arch), *cni_plugins(s.cni_plugins, arch),
            *crictl(s.crictl, arch), *kubernetes(s.kubernetes, arch, ("kubelet", "kube-proxy")))


def of_host(s: Stack, arch: str, host: Host) -> tuple[Binary, ...]:
    """Every binary the host's roles install (what `fab verify` compares with the bundle)."""
    return (*(for_etcd(s, arch) if host.has("etcd") else ()),
            *(for_control_plane(s, arch) if host.has("control_plane") else ()),
            *(for_node(s, arch) if host.has("worker") else ()))


def etcd(version: str, arch: str, notifies: tuple[str, ...]) -> tuple[Binary, ...]:
    source = release("etcd", version, arch).bundle_path
    top = f"etcd-v{version}-linux-{arch}"
    tools = ("etcd", "etcdctl", "etcdutl") if _at_least(version, 3, 5) else ("etcd", "etcdctl")
    return tuple(Binary(source, f"{top}/{t}", f"{KUBE_BIN}/{t}", notifies if t == "etcd" else ()) for t in tools)


def kubernetes(version: str, arch: str, names: tuple[str, ...]) -> tuple[Binary, ...]:
    """Kubernetes' own binaries, from the server tarball whose SHA-512 each release's CHANGELOG publishes."""
    source = release("kubernetes_server", version, arch).bundle_path
    return tuple(
        Binary(source, f"kubernetes/server/bin/{n}", f"{KUBE_BIN}/{n}", (n,) if n != "kubectl" else ())
        for n in names
    )


def containerd(version: str, arch: str) -> tuple[Binary, ...]:
    """The daemon, the runc shim the CRI uses, and `ctr`, containerd's own client: the only one that imports
    image archives (crictl, installed too, is the Kubernetes-aware one for everything else)."""
    source = release("containerd", version, arch).bundle_path
    return tuple(Binary(source, f"bin/{n}", f"{KUBE_BIN}/{n}", ("containerd",) if n == "containerd" else ())
                 for n in ("containerd", "containerd-shim-runc-v2", "ctr"))


def runc(version: str, arch: str) -> tuple[Binary, ...]:
    return (Binary(release("runc", version, arch).bundle_path, None, "/usr/local/sbin/runc"),)


# What the CNIs kubefab installs delegate to: Calico's and flannel's default chains (bridge, host-local,
# portmap, bandwidth) and the loopback plugin every pod sandbox needs.
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap", "bandwidth")


def cni_plugins(version: str, arch: str) -> tuple[Binary, ...]:
    source = release("cni_plugins", version, arch).bundle_path
    return tuple(Binary(source, p, f"/opt/cni/bin/{p}") for p in CNI_PLUGINS)


def crictl(version: str, arch: str) -> tuple[Binary, ...]:
    return (Binary(release("crictl", version, arch).bundle_path, "crictl", f"{KUBE_BIN}/crictl"),)


def _at_least(version: str, major: int, minor: int) -> bool:
    parts = [int(p) for p in version.split(".")[:2]]
    return (parts[0], parts[1]) >= (major, minor)
