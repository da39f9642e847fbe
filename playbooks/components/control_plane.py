"""kube-apiserver, kube-controller-manager and kube-scheduler on every control-plane host, leader election on."""

from __future__ import annotations

import csv
import dataclasses
import io

from kubefab.playbooks import hardening, ports
from kubefab.playbooks.component import Component, Port, with_role
from kubefab.playbooks.components import binaries
from kubefab.playbooks.components.load_balancer import lb_hosts, set_server
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Check, Directory, File, Plan
from kubefab.playbooks.render import render

ADMIN = "/etc/kubernetes/admin.conf"


def kubectl(args: str = "get --raw /readyz", server: str | None = None) -> str:
    """kubectl on a control-plane host with the admin credentials (through the VIP unless `server`)."""
    return f"{binaries.KUBE_BIN}/kubectl --kubeconfig={ADMIN} {f'--server={server} ' if server else ''}{args}"


def files(inputs: Inputs, host: Host, name: str, *items: tuple[str, str, bool]) -> Plan:
    """A plan of `name`'s files: (template, path, secret) each, restarting `name` when changed."""
    ctx = inputs.context(host, admission_plugins=admission_plugins(inputs.cluster))
    return Plan(
        host.name,
        name,
        files=tuple(
            File(path, render(template, **ctx), notifies=(name,), secret=secret) for template, path, secret in items
        ),
    )


TOKEN_FILE = "/etc/kubernetes/token-auth.csv"


def admission_plugins(c: Cluster) -> tuple[str, ...]:
    return (*hardening.ADMISSION_PLUGINS, *(("AlwaysPullImages",) if c.api.always_pull_images else ()))


def token_file(inputs: Inputs) -> bytes:
    """kube-apiserver's static token file (CSV: token, user, uid, groups), written by the csv module."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for user in inputs.cluster.api.token_users:
        writer.writerow([inputs.secrets.tokens[user.name], user.name, user.name, ",".join(user.groups)])
    return out.getvalue().encode()


def apiserver_plan(inputs: Inputs, host: Host) -> Plan:
    plan = files(
        inputs,
        host,
        "kube-apiserver",
        ("kube-apiserver/apiserver.j2", "/etc/kubernetes/apiserver", False),
        ("kube-apiserver/admission-config.yaml.j2", "/etc/kubernetes/admission-config.yaml", False),
        ("kube-apiserver/encryption-config.yaml.j2", "/etc/kubernetes/encryption-config.yaml", True),
        ("kube-apiserver/audit-policy.yaml.j2", "/etc/kubernetes/audit-policy.yaml", False),
        ("kube-apiserver/kube-apiserver.service.j2", "/etc/systemd/system/kube-apiserver.service", False),
    )
    tokens = (
        (File(TOKEN_FILE, token_file(inputs), notifies=(plan.component,), secret=True),)
        if inputs.cluster.api.token_users
        else ()
    )
    return dataclasses.replace(
        plan,
        files=plan.files + tokens,
        directories=(Directory("/etc/kubernetes"), Directory("/var/log/kubernetes", 0o700)),
    )


def apiserver_checks(c: Cluster, host: Host) -> tuple[Check, ...]:
    local = Check("apiserver /readyz", kubectl(server=f"https://127.0.0.1:{c.api.apiserver_port}"), 90)
    # Through the VIP (or the single apiserver) with the admin credentials: TLS verified against the cluster CA
    # and the server address, as every client will.
    return local, Check(f"/readyz through {c.server_url}", kubectl(), 90, scope="once")


APISERVER = Component(
    "kube-apiserver",
    phase="control-plane",
    hosts=with_role("control_plane"),
    plan=apiserver_plan,
    services=("kube-apiserver",),
    restart="rolling",
    ports=lambda c: (Port(c.api.apiserver_port),),
    releases=("kubernetes_server",),
    binaries=lambda s, arch: binaries.kubernetes(s.kubernetes, arch, ("kube-apiserver", "kubectl")),
    reads=(
        "pki/ca.crt",
        "pki/etcd/ca.crt",
        "pki/front-proxy-ca.crt",
        "pki/apiserver",
        "pki/apiserver-kubelet-client",
        "pki/apiserver-etcd-client",
        "pki/front-proxy-client",
        "pki/sa.pub",
        "pki/sa.key",
    ),
    checks=apiserver_checks,
    # Out of HAProxy while it (re)starts: no request reaches an apiserver that is not ready yet or shutting down.
    rotation=lambda c, host, state: tuple((lb, set_server(host.name, state)) for lb in lb_hosts(c)),
)


def leader_elected(name: str, port: int, reads: tuple[str, ...], *templates: tuple[str, str]) -> Component:
    """The controller-manager and the scheduler: their files, their binary, a loopback port, running."""
    return Component(
        name,
        phase="control-plane",
        hosts=with_role("control_plane"),
        plan=lambda inputs, host: files(inputs, host, name, *((t, path, False) for t, path in templates)),
        services=(name,),
        restart="rolling",
        ports=lambda c: (Port(port, bind=("local",)),),
        releases=("kubernetes_server",),
        binaries=lambda s, arch: binaries.kubernetes(s.kubernetes, arch, (name,)),
        reads=reads,
        checks=lambda c, host: (Check(f"{name} running", f"systemctl is-active -q {name}", 60),),
    )


CONTROLLER_MANAGER = leader_elected(
    "kube-controller-manager",
    ports.CONTROLLER_MANAGER,
    (
        "pki/ca.crt",
        "pki/ca.key",
        "pki/ca-signing.crt",
        "pki/front-proxy-ca.crt",
        "pki/sa.key",
        "controller-manager.conf",
    ),
    ("kube-controller-manager/controller-manager.j2", "/etc/kubernetes/controller-manager"),
    (
        "kube-controller-manager/kube-controller-manager.service.j2",
        "/etc/systemd/system/kube-controller-manager.service",
    ),
)

SCHEDULER = leader_elected(
    "kube-scheduler",
    ports.SCHEDULER,
    ("scheduler.conf",),
    ("kube-scheduler/scheduler.j2", "/etc/kubernetes/scheduler"),
    ("kube-scheduler/kube-scheduler.yaml.j2", "/etc/kubernetes/kube-scheduler.yaml"),
    ("kube-scheduler/kube-scheduler.service.j2", "/etc/systemd/system/kube-scheduler.service"),
)
