"""The cluster's credentials delivered: each host receives only the files its roles need. The Kubernetes CA key goes to
control-plane hosts only (the controller-manager signs CSRs); the etcd and front-proxy CA keys stay on the
operator's machine."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from kubefab.pki.profiles import ETCD_PKI, authorities, identities
from kubefab.pki.store import SA_KEY, trust
from kubefab.playbooks.component import Component, readers
from kubefab.playbooks.inputs import REMOTE_PKI, Inputs
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Check, Directory, File, Plan


def credential(daemons: Sequence[Component], c: Cluster, host: Host, path: str, content: bytes, private: bool) -> File:
    """A credential file (0600), restarting the services on `host` whose declarations say they read it. etcd's
    own directory is etcd's; everything else is root's."""
    key = path.removeprefix("/etc/kubernetes/")
    owner = "etcd" if path.startswith(f"{ETCD_PKI}/") else "root"
    return File(path, content, 0o600, owner, owner, readers(daemons, c, host, key), secret=private)


def plan(daemons: Sequence[Component], inputs: Inputs, host: Host) -> Plan:
    c, pki = inputs.cluster, inputs.credentials
    files: list[File] = []

    def _file(path: str, content: bytes, private: bool) -> File:
        return credential(daemons, c, host, path, content, private)

    for ca in authorities(c):
        trusted = trust(pki, ca.file)  # two CAs during a rotation
        if host.name in ca.cert_hosts:
            files.append(_file(f"{REMOTE_PKI}/{ca.remote}.crt", trusted, False))
        if host.name in ca.key_hosts:
            files.append(_file(f"{REMOTE_PKI}/{ca.remote}.key", pki[f"pki/{ca.file}.key"], True))
            files.append(_file(ca.signing, pki[f"pki/{ca.file}.crt"], False))
        if ca.name == "etcd" and host.has("etcd"):
            files.append(_file(f"{ETCD_PKI}/ca.crt", trusted, False))
    for ident in identities(c):
        if host.name not in ident.hosts:
            continue
        if ident.kubeconfig is not None:
            files.append(_file(ident.kubeconfig.remote, pki[f"kubeconfig/{ident.kubeconfig.file}"], True))
        elif ident.pem is not None:
            pem = pki[f"pki/{ident.file}.crt"] + pki[f"pki/{ident.file}.key"]
            files.append(_file(ident.pem, pem, True))
        else:
            files.append(_file(f"{ident.stem}.crt", pki[f"pki/{ident.file}.crt"], False))
            files.append(_file(f"{ident.stem}.key", pki[f"pki/{ident.file}.key"], True))
    if host.has("control_plane"):
        files.append(_file(f"{REMOTE_PKI}/{SA_KEY}.key", pki[f"pki/{SA_KEY}.key"], True))
        files.append(_file(f"{REMOTE_PKI}/{SA_KEY}.pub", pki[f"pki/{SA_KEY}.pub"], False))
    # Member keys are owned by the etcd user, which must exist before they are installed.
    etcd = host.has("etcd")
    return Plan(
        host.name,
        "certificates",
        files=tuple(files),
        users=("etcd",) if etcd else (),
        directories=(Directory(ETCD_PKI, 0o700, "etcd", "etcd"),) if etcd else (),
    )


def leaves(c: Cluster, host: Host) -> list[tuple[str, str]]:
    """(certificate, the CA it must verify against) for every leaf delivered as a file to `host`."""
    ca_remote = {ca.name: f"{REMOTE_PKI}/{ca.remote}.crt" for ca in authorities(c)}
    return [
        (f"{i.stem}.crt", ca_remote[i.authority])
        for i in identities(c)
        if host.name in i.hosts and i.kubeconfig is None and i.pem is None
    ]


def verify_check(c: Cluster, host: Host) -> tuple[Check, ...]:
    commands = [f"openssl verify -CAfile {ca} {crt} >/dev/null" for crt, ca in leaves(c, host)]
    return (Check("certificates check: openssl verify", " && ".join(commands), 10),) if commands else ()


def component(daemons: Sequence[Component]) -> Component:
    """The credentials of every host, each restarting the services (of `daemons`) that read it."""
    return Component(
        "certificates", phase="certificates", hosts=lambda c: c.hosts, plan=partial(plan, daemons), checks=verify_check
    )
