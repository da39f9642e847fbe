"""The add-ons: cluster-wide manifests applied through the VIP with the admin credentials: RBAC for the
apiserver to reach kubelets, the CNI (the bundle's official manifest, patched with the pod CIDR) and CoreDNS."""

from __future__ import annotations

import re
from pathlib import Path

from kubefab.playbooks import dns, ports
from kubefab.playbooks.component import Component, Port, first_with, with_role
from kubefab.playbooks.components.control_plane import kubectl
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Check, File, Plan, Step
from kubefab.playbooks.render import render
from kubefab.playbooks.versions import CNIError, cni_release

ADDONS_DIR = "/etc/kubernetes/addons"


class AddonError(Exception):
    pass


def manifests(inputs: Inputs, bundle: Path) -> dict[str, bytes]:
    """File name -> manifest of the add-ons the inventory selects, in the order they are applied."""
    selected = inputs.cluster.addons
    docs = {}
    if "rbac" in selected:
        docs["00-apiserver-to-kubelet-rbac.yaml"] = render("addons/apiserver-to-kubelet-rbac.yaml.j2")
    if "cni" in selected:
        try:
            rel = cni_release(inputs.cluster.cni, inputs.stack)
        except CNIError as exc:
            raise AddonError(str(exc)) from None
        source = bundle / rel.bundle_path
        if not source.exists():
            raise AddonError(f"{source}: the {inputs.cluster.cni} manifest is not in the bundle (run `kubefab bundle`)")
        text = source.read_text()
        if inputs.cluster.cni == "calico":
            text = patch_calico(text, str(inputs.cluster.network.pod_cidr), str(source))
        else:
            text = patch_flannel(text, inputs.cluster, str(source))
        docs[f"10-{rel.filename}"] = text.encode()
    if "coredns" in selected:
        docs["20-coredns.yaml"] = render("addons/coredns.yaml.j2", **inputs.context())
    return docs


def patch_calico(text: str, pod_cidr: str, name: str) -> str:
    """Uncomment CALICO_IPV4POOL_CIDR in calico.yaml and set it to the pod CIDR."""
    pattern = re.compile(r'^(\s*)#\s*- name: CALICO_IPV4POOL_CIDR\n\s*#\s*value: "[^"]*"$', re.M)
    patched, count = pattern.subn(
        lambda m: f'{m.group(1)}- name: CALICO_IPV4POOL_CIDR\n{m.group(1)}  value: "{pod_cidr}"', text
    )
    if count != 1:
        raise AddonError(f"{name}: expected one commented CALICO_IPV4POOL_CIDR setting, found {count}")
    return patched


def patch_flannel(text: str, c: Cluster, name: str) -> str:
    """flannel's net-conf.json: the pod CIDR as its Network, the inventory's backend, and nftables rules when
    kube-proxy uses nftables (mixing the two leaves iptables rules nothing else maintains)."""
    settings = {
        "Network": f'"{c.network.pod_cidr}"',
        "Type": f'"{c.network.flannel_backend}"',
        "EnableNFTables": "true" if c.kube_proxy_mode == "nftables" else "false",
    }
    for key, value in settings.items():
        text, count = re.subn(rf'("{key}":\s*)("[^"]*"|true|false)', lambda m, v=value: f"{m.group(1)}{v}", text)
        if count != 1:
            raise AddonError(f'{name}: expected one "{key}" in net-conf.json, found {count}')

    # flanneld takes the interface of the default route unless told: each node's is the one holding its own
    # address (the kubelet's node IP, the inventory's), default route or not.
    def node_ip(m: re.Match) -> str:
        pad = m.group(1)
        return (
            f"{m.group(0)}{pad}- name: FLANNELD_IFACE\n{pad}  valueFrom:\n{pad}    fieldRef:\n"
            f"{pad}      fieldPath: status.hostIP\n"
        )

    text, count = re.subn(r"^(\s*)env:\n", node_ip, text, flags=re.M)
    if count != 1:
        raise AddonError(f"{name}: expected one `env:` list (flanneld's), found {count}")
    return text


def plan(inputs: Inputs, host: Host) -> Plan:
    """The manifests on the first control-plane host, applied once every node holds the images they run.
    `kubectl diff` (server-side, exit 0 when nothing differs) decides whether they need applying."""
    docs = manifests(inputs, inputs.cluster.bundle_dir)
    apply = Step(
        "kubectl apply the add-on manifests",
        unless=kubectl(f"diff -f {ADDONS_DIR}/ >/dev/null"),
        run=kubectl(f"apply -f {ADDONS_DIR}/"),
    )
    return Plan(
        host.name,
        "addons",
        files=tuple(File(f"{ADDONS_DIR}/{n}", body) for n, body in docs.items()),
        final_steps=(apply,),
    )


def checks(c: Cluster, host: Host) -> tuple[Check, ...]:
    out = []
    if "cni" in c.addons:  # without a network plugin no node becomes Ready
        out.append(
            Check("nodes Ready", kubectl("wait --for=condition=Ready nodes --all --timeout=10s"), 600, 5, scope="once")
        )
    if "coredns" in c.addons:
        name = f"kubernetes.default.svc.{c.network.domain}"
        out += [
            Check(
                "CoreDNS available",
                kubectl("-n kube-system rollout status deployment/coredns --timeout=10s"),
                600,
                5,
                scope="once",
            ),
            Check(
                f"CoreDNS answers {name} at {c.network.dns_ip}",
                dns.query_command(name, str(c.network.dns_ip)),
                60,
                2,
                scope="once",
            ),
        ]
    return tuple(out)


ADDONS = Component(
    "addons",
    phase="addons",
    hosts=lambda c: first_with("control_plane")(c) if c.addons else (),
    plan=plan,
    checks=checks,
)

# The network plugin runs as pods on every worker; its ports are the workers' to open.
CNI = Component(
    "cni",
    phase="addons",
    hosts=with_role("worker"),
    ports=lambda c: (
        (Port(ports.CALICO_BGP, bind=()), Port(ports.CALICO_VXLAN, "udp", bind=()))
        if c.cni == "calico"
        else (Port(ports.FLANNEL_VXLAN, "udp", bind=()),)
    ),
    rich_rules=lambda c: ('rule protocol value="4" accept',) if c.cni == "calico" else (),  # IP-in-IP, calico.yaml
)
