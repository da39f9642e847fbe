"""Phase `control-plane`: kube-apiserver, kube-controller-manager and kube-scheduler with leader election."""

from __future__ import annotations

from playbooks.model import Host
from playbooks.plan import Directory, File, Plan
from playbooks.plans import binaries
from playbooks.plans.inputs import Inputs
from playbooks.render import render

COMPONENTS = binaries.CONTROL_PLANE


def plan(inputs: Inputs, host: Host) -> Plan | None:
    if not host.has("control_plane"):
        return None
    ctx = inputs.context(host)

    def conf(template: str, path: str, service: str, mode: int = 0o644, secret: bool = False) -> File:
        return File(path, render(template, **ctx), mode, notifies=(service,), secret=secret)

    return Plan(
        host.name,
        "control-plane",
        directories=(Directory("/etc/kubernetes"), Directory("/var/log/kubernetes", 0o700)),
        binaries=binaries.for_control_plane(inputs.stack, inputs.arch),
        files=(
            conf("kube-apiserver/apiserver.j2", "/etc/kubernetes/apiserver", "kube-apiserver"),
            conf("kube-apiserver/encryption-config.yaml.j2", "/etc/kubernetes/encryption-config.yaml",
                 "kube-apiserver", 0o600, secret=True),
            conf("kube-apiserver/audit-policy.yaml.j2", "/etc/kubernetes/audit-policy.yaml", "kube-apiserver"),
            conf("kube-apiserver/kube-apiserver.service.j2", "/etc/systemd/system/kube-apiserver.service",
                 "kube-apiserver"),
            conf("kube-controller-manager/controller-manager.j2", "/etc/kubernetes/controller-manager",
                 "kube-controller-manager"),
            conf("kube-controller-manager/kube-controller-manager.service.j2",
                 "/etc/systemd/system/kube-controller-manager.service", "kube-controller-manager"),
            conf("kube-scheduler/scheduler.j2", "/etc/kubernetes/scheduler", "kube-scheduler"),
            conf("kube-scheduler/kube-scheduler.yaml.j2", "/etc/kubernetes/kube-scheduler.yaml", "kube-scheduler"),
            conf("kube-scheduler/kube-scheduler.service.j2", "/etc/systemd/system/kube-scheduler.service",
                 "kube-scheduler"),
        ),
        services=COMPONENTS,
    )
