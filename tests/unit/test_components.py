"""The declarations and what is derived from them, including the worked example in docs/architecture.md:
a new daemon declared once shows up in preflight's ports, prepare's firewall openings, the bundle's files and
verify's binaries without any other change."""

from __future__ import annotations

import re
from pathlib import Path

from kubefab.playbooks import component, components
from kubefab.playbooks.inventory import load
from kubefab.playbooks.versions import stack
from tests.conftest import EXAMPLE

DOC = Path(__file__).parents[2] / "docs" / "architecture.md"


def example_component() -> component.Component:
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)
    return scope["NODE_EXPORTER"]


def test_the_worked_example_is_derived_everywhere() -> None:
    c = load(EXAMPLE)
    new = example_component()
    daemons = (*components.DAEMONS, new)
    worker = c.workers[0]
    assert component.held_ports(daemons, c, worker)[9100] == "node-exporter"
    assert "9100/tcp" in component.firewall_ports(daemons, c, worker)
    assert "node-exporter" in component.services_on(daemons, c, worker)
    assert [b.path for b in new.binaries(stack(c.kubernetes_version), "amd64")] == ["/usr/local/bin/node_exporter"]
    assert new.phase in components.PHASES
    assert 9100 not in components.required_ports(c, worker), "the example is not one of kubefab's daemons"


def test_every_service_belongs_to_one_declared_component() -> None:
    services = [s for comp in components.COMPONENTS for s in comp.services]
    assert len(services) == len(set(services))
    assert {comp.phase for comp in components.COMPONENTS} == set(components.PHASES)


def test_a_credential_restarts_exactly_the_services_that_declare_it() -> None:
    c = load(EXAMPLE)
    cp = c.control_plane[0]
    readers = component.readers
    assert readers(components.DAEMONS, c, cp, "pki/ca.key") == ("kube-controller-manager",)
    assert set(readers(components.DAEMONS, c, cp, "pki/apiserver.crt")) == {"kube-apiserver"}
    assert set(readers(components.DAEMONS, c, cp, "pki/ca.crt")) >= {"kube-apiserver", "kube-controller-manager"}
    assert readers(components.DAEMONS, c, cp, "pki/unknown.crt") == ()


def test_bundle_files_follow_the_roles_present() -> None:
    c = load(EXAMPLE)
    s = stack(c.kubernetes_version)
    names = [r.component for r in components.releases(c, s, "amd64")]
    assert names == ["etcd", "kubernetes_server", "containerd", "runc", "cni_plugins", "crictl"]
