"""Phase `add-ons`: cluster-wide manifests applied through the VIP with the admin credentials: RBAC for the
apiserver to reach kubelets, the CNI (the bundle's official manifest, patched with the pod CIDR) and CoreDNS."""

from __future__ import annotations

import re
from pathlib import Path

from playbooks.plans.inputs import Inputs
from playbooks.render import render
from playbooks.versions import Release, Stack, release

NOARCH = "all"


class AddonError(Exception):
    pass


def cni_release(cni: str, stack: Stack) -> Release:
    version = stack.calico if cni == "calico" else stack.flannel
    if version in (None, "None"):
        raise AddonError(f"no {cni} version is pinned for Kubernetes {stack.minor}: set versions.{cni}")
    return release(f"{cni}_manifest", version, NOARCH)


def manifests(inputs: Inputs, bundle: Path) -> dict[str, bytes]:
    """File name -> manifest of the add-ons the inventory selects, in the order they are applied."""
    selected = inputs.cluster.addons
    docs = {}
    if "rbac" in selected:
        docs["00-apiserver-to-kubelet-rbac.yaml"] = render("addons/apiserver-to-kubelet-rbac.yaml.j2")
    if "cni" in selected:
        rel = cni_release(inputs.cluster.cni, inputs.stack)
        source = bundle / rel.bundle_path
        if not source.exists():
            raise AddonError(f"{source}: the {inputs.cluster.cni} manifest is not in the bundle (run `kubefab bundle`)")
        patch = patch_calico if inputs.cluster.cni == "calico" else patch_flannel
        docs[f"10-{rel.filename}"] = patch(source.read_text(), str(inputs.cluster.network.pod_cidr),
                                           str(source)).encode()
    if "coredns" in selected:
        docs["20-coredns.yaml"] = render("addons/coredns.yaml.j2", **inputs.context())
    return docs


def patch_calico(text: str, pod_cidr: str, name: str) -> str:
    """Uncomment CALICO_IPV4POOL_CIDR in calico.yaml and set it to the pod CIDR."""
    pattern = re.compile(r'^(\s*)#\s*- name: CALICO_IPV4POOL_CIDR\n\s*#\s*value: "[^"]*"$', re.M)
    patched, count = pattern.subn(lambda m: f'{m.group(1)}- name: CALICO_IPV4POOL_CIDR\n'
                                            f'{m.group(1)}  value: "{pod_cidr}"', text)
    if count != 1:
        raise AddonError(f"{name}: expected one commented CALICO_IPV4POOL_CIDR setting, found {count}")
    return patched


def patch_flannel(text: str, pod_cidr: str, name: str) -> str:
    """Set the Network of flannel's net-conf.json to the pod CIDR."""
    patched, count = re.subn(r'("Network":\s*)"[^"]*"', lambda m: f'{m.group(1)}"{pod_cidr}"', text)
    if count != 1:
        raise AddonError(f"{name}: expected one \"Network\" in net-conf.json, found {count}")
    return patched
