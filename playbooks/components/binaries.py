"""Which executables each component takes from the bundle, and where they are inside the release files."""

from __future__ import annotations

from kubefab.playbooks.plan import Binary
from kubefab.playbooks.versions import release

KUBE_BIN = "/usr/local/bin"


def etcd(version: str, arch: str) -> tuple[Binary, ...]:
    source = release("etcd", version, arch).bundle_path
    top = f"etcd-v{version}-linux-{arch}"
    tools = ("etcd", "etcdctl", "etcdutl") if _at_least(version, 3, 5) else ("etcd", "etcdctl")
    return tuple(Binary(source, f"{top}/{t}", f"{KUBE_BIN}/{t}", ("etcd",) if t == "etcd" else ()) for t in tools)


def kubernetes(version: str, arch: str, names: tuple[str, ...]) -> tuple[Binary, ...]:
    """Kubernetes' own binaries, from the server tarball whose SHA-512 each release's CHANGELOG publishes."""
    source = release("kubernetes_server", version, arch).bundle_path
    return tuple(
        Binary(source, f"kubernetes/server/bin/{n}", f"{KUBE_BIN}/{n}", (n,) if n != "kubectl" else ()) for n in names
    )


def containerd(version: str, arch: str) -> tuple[Binary, ...]:
    """The daemon, the runc shim the CRI uses, and `ctr`, containerd's own client: the only one that imports
    image archives (crictl, installed too, is the Kubernetes-aware one for everything else)."""
    source = release("containerd", version, arch).bundle_path
    return tuple(
        Binary(source, f"bin/{n}", f"{KUBE_BIN}/{n}", ("containerd",) if n == "containerd" else ())
        for n in ("containerd", "containerd-shim-runc-v2", "ctr")
    )


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
