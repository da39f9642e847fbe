"""Rendered command lines and config files against the references of every supported minor, generated from
that minor's real binaries and API types (playbooks/reference.py): no flag the target version lacks, no
deprecated flag, every required flag, the right kinds and apiVersions, no config field the version lacks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubefab.playbooks import versions
from kubefab.playbooks.audit import args_of
from kubefab.playbooks.clusterdir import ensure_inputs
from kubefab.playbooks.flagref import config_fields, field_paths, valid_flags
from kubefab.playbooks.inventory import load
from tests.conftest import EXAMPLE, Rendered

ENV_FILES = {
    "kube-apiserver": ("/etc/kubernetes/apiserver", "KUBE_API_ARGS"),
    "kube-controller-manager": ("/etc/kubernetes/controller-manager", "KUBE_CONTROLLER_MANAGER_ARGS"),
    "kube-scheduler": ("/etc/kubernetes/scheduler", "KUBE_SCHEDULER_ARGS"),
    "kubelet": ("/etc/kubernetes/kubelet", "KUBELET_ARGS"),
    "kube-proxy": ("/etc/kubernetes/proxy", "KUBE_PROXY_ARGS"),
}
REQUIRED = {
    "kube-apiserver": {
        "etcd-servers",
        "etcd-cafile",
        "etcd-certfile",
        "etcd-keyfile",
        "client-ca-file",
        "tls-cert-file",
        "tls-private-key-file",
        "service-account-issuer",
        "service-account-key-file",
        "service-account-signing-key-file",
        "service-cluster-ip-range",
        "authorization-mode",
        "kubelet-client-certificate",
        "kubelet-client-key",
        "kubelet-certificate-authority",
        "proxy-client-cert-file",
        "proxy-client-key-file",
        "requestheader-client-ca-file",
        "requestheader-allowed-names",
        "endpoint-reconciler-type",
        "shutdown-watch-termination-grace-period",
        "encryption-provider-config",
        "audit-policy-file",
        "audit-log-path",
        "audit-log-maxage",
        "audit-log-maxbackup",
        "audit-log-maxsize",
        "profiling",
        "anonymous-auth",
        "secure-port",
        "advertise-address",
    },
    "kube-controller-manager": {
        "kubeconfig",
        "authentication-kubeconfig",
        "authorization-kubeconfig",
        "leader-elect",
        "cluster-signing-cert-file",
        "cluster-signing-key-file",
        "root-ca-file",
        "service-account-private-key-file",
        "use-service-account-credentials",
        "cluster-cidr",
        "service-cluster-ip-range",
        "profiling",
        "bind-address",
    },
    "kube-scheduler": {"config", "authentication-kubeconfig", "authorization-kubeconfig", "bind-address"},
    "kubelet": {"config", "kubeconfig", "node-ip"},
    "kube-proxy": {"config"},
}
# Flags the book (Kubernetes 1.19-1.23) used that current versions removed: never rendered.
REMOVED = {
    "insecure-port",
    "insecure-bind-address",
    "logtostderr",
    "alsologtostderr",
    "log-dir",
    "log-file",
    "network-plugin",
    "pod-infra-container-image",
    "apiserver-count",
    "feature-gates=RemoveSelfLink",
    "experimental-encryption-provider-config",
    "basic-auth-file",
    "port",
    "address",
    "kubelet-https",
}
KINDS = yaml.safe_load((Path(versions.VERSIONS_FILE).parent / "config_kinds.yaml").read_text())
# Fields whose keys are data (gate names, signal names), not part of the schema.
MAP_FIELDS = {
    "featureGates",
    "evictionHard",
    "evictionSoft",
    "evictionSoftGracePeriod",
    "kubeReserved",
    "systemReserved",
    "evictionMinimumReclaim",
}
CONFIG_FILES = {
    "/var/lib/kubelet/config.yaml": "KubeletConfiguration",
    "/var/lib/kube-proxy/config.yaml": "KubeProxyConfiguration",
    "/etc/kubernetes/kube-scheduler.yaml": "KubeSchedulerConfiguration",
    "/etc/kubernetes/encryption-config.yaml": "EncryptionConfiguration",
    "/etc/kubernetes/audit-policy.yaml": "Policy",
    "/etc/kubernetes/admin.conf": "Config",
    "/etc/kubernetes/kubelet.conf": "Config",
}


@pytest.fixture(scope="module", params=versions.supported_minors())
def minor_render(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp(f"k8s-{request.param}")
    data = yaml.safe_load(EXAMPLE.read_text())
    data |= {"kubernetes_version": request.param, "cluster_dir": str(tmp / "c"), "bundle": str(tmp / "b")}
    (tmp / "i.yaml").write_text(yaml.safe_dump(data))
    cluster = load(tmp / "i.yaml")
    return request.param, Rendered(cluster, ensure_inputs(cluster))


@pytest.mark.parametrize("component", list(ENV_FILES))
def test_every_rendered_flag_exists_in_the_target_version(minor_render, component: str) -> None:
    minor, rendered = minor_render
    path, var = ENV_FILES[component]
    flags = args_of(rendered.text("k8s-1", path), var)
    reference = valid_flags(component, minor)
    assert flags, f"no flags parsed from {path}"
    unknown = sorted(set(flags) - set(reference))
    assert not unknown, f"{component} {minor} has no flag(s): {unknown}"
    deprecated = sorted(f for f in flags if reference[f])
    assert not deprecated, f"{component} {minor}: deprecated flag(s) rendered: {deprecated}"
    missing = sorted(REQUIRED[component] - set(flags))
    assert not missing, f"{component} {minor}: required flag(s) missing: {missing}"
    assert not set(flags) & REMOVED


def test_reference_knows_removed_flags() -> None:
    """The data can fail the test above: known removals are absent from the newest reference."""
    newest = versions.supported_minors()[-1]
    assert "insecure-port" not in valid_flags("kube-apiserver", newest)
    assert "network-plugin" not in valid_flags("kubelet", newest)
    assert "pod-infra-container-image" not in valid_flags("kubelet", "1.35")
    assert "etcd-servers" in valid_flags("kube-apiserver", newest)


@pytest.mark.parametrize(("path", "kind"), list(CONFIG_FILES.items()))
def test_config_kinds_and_api_versions(minor_render, path: str, kind: str) -> None:
    minor, rendered = minor_render
    doc = yaml.safe_load(rendered.files("k8s-1")[path])
    assert doc["kind"] == kind
    assert doc["apiVersion"] == KINDS["minors"][minor]["kinds"][kind]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/var/lib/kubelet/config.yaml", "KubeletConfiguration"),
        ("/var/lib/kube-proxy/config.yaml", "KubeProxyConfiguration"),
        ("/etc/kubernetes/kube-scheduler.yaml", "KubeSchedulerConfiguration"),
    ],
)
def test_every_rendered_config_field_exists_in_the_target_version(minor_render, path: str, kind: str) -> None:
    minor, rendered = minor_render
    doc = yaml.safe_load(rendered.files("k8s-1")[path])
    data_keys = {f"{m}." for m in MAP_FIELDS}
    paths = {p for p in field_paths(doc) if not any(p.startswith(k) for k in data_keys)}
    unknown = sorted(paths - config_fields(kind, minor))
    assert not unknown, f"{kind} {minor} has no field(s): {unknown}"


def test_field_reference_can_fail() -> None:
    """The generated lists hold nested fields, and not what the real types lack."""
    newest = versions.supported_minors()[-1]
    kubelet = config_fields("KubeletConfiguration", newest)
    assert {"authentication.x509.clientCAFile", "containerRuntimeEndpoint", "failCgroupV1"} <= kubelet
    assert "cgroupDriverr" not in kubelet and "networkPlugin" not in kubelet


def test_kube_proxy_mode_is_one_the_version_has(minor_render) -> None:
    minor, rendered = minor_render
    doc = yaml.safe_load(rendered.files("k8s-1")["/var/lib/kube-proxy/config.yaml"])
    modes = KINDS["minors"][minor]["kube_proxy_modes"]
    assert doc["mode"] in modes["linux"] and doc["mode"] not in modes["deprecated"]


def test_kubelet_takes_its_cgroup_driver_from_containerd(minor_render) -> None:
    _, rendered = minor_render
    doc = yaml.safe_load(rendered.files("k8s-1")["/var/lib/kubelet/config.yaml"])
    assert "cgroupDriver" not in doc and "containerRuntimeEndpoint" in doc and "failCgroupV1" in doc
    assert "SystemdCgroup = true" in rendered.text("k8s-1", "/etc/containerd/config.toml")
