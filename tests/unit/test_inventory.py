"""Inventory validation: one small invalid inventory per rule, every problem reported at once, each naming the
file, the host, the field, what was found and what is expected; fuzzed so no input gives a traceback."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubefab.playbooks import versions
from kubefab.playbooks.inventory import load, validate, validate_text
from kubefab.playbooks.problems import InventoryError, Problem

EXAMPLE = Path(__file__).parents[2] / "inventory" / "example.yaml"
BASE = yaml.safe_load(EXAMPLE.read_text())
FILE = Path("inv/cluster.yaml")


def problems(mutate: Callable[[dict], object]) -> list[Problem]:
    data = copy.deepcopy(BASE)
    mutate(data)
    return validate_text(yaml.safe_dump(data, sort_keys=False), FILE).problems


def only(mutate: Callable[[dict], object], field: str, found: str = "", severity: str = "error") -> Problem:
    """The mutation yields exactly one problem, on `field`, mentioning `found`."""
    found_problems = problems(mutate)
    assert len(found_problems) == 1, "\n".join(map(str, found_problems))
    p = found_problems[0]
    assert p.field == field, str(p)
    assert found in p.found, str(p)
    assert p.severity == severity
    assert p.file == str(FILE)
    assert p.expected
    return p


def test_example_is_valid() -> None:
    cluster = load(EXAMPLE)
    assert [h.name for h in cluster.lb_hosts] == ["k8s-1", "k8s-2"]
    assert len(cluster.etcd_hosts) == len(cluster.control_plane) == len(cluster.workers) == 3
    assert cluster.server_url == "https://192.168.10.100:8443"


def test_duplicate_host_names() -> None:
    found = problems(lambda d: d["hosts"][1].update(name="k8s-1"))
    assert {(q.field, q.host) for q in found} == {("hosts[0].name", "k8s-1"), ("hosts[1].name", "k8s-1")}
    assert all("duplicate" in q.expected for q in found)


def test_duplicate_host_ips() -> None:
    found = problems(lambda d: d["hosts"][2].update(ip="192.168.10.11"))
    assert {q.field for q in found} == {"hosts[0].ip", "hosts[2].ip"}
    assert {q.host for q in found} == {"k8s-1", "k8s-3"}


def test_malformed_ip_names_host_and_line() -> None:
    p = only(lambda d: d["hosts"][1].update(ip="192.168.10.300"), "hosts[1].ip", "192.168.10.300")
    assert p.host == "k8s-2"
    assert p.line is not None and p.line > 1
    assert "IPv4" in p.expected


def test_malformed_cidr() -> None:
    only(lambda d: d["network"].update(pod_cidr="10.244.0.0/33"), "network.pod_cidr", "10.244.0.0/33")


def test_cidr_with_host_bits() -> None:
    only(lambda d: d["network"].update(service_cidr="10.96.0.1/12"), "network.service_cidr", "10.96.0.1/12")


@pytest.mark.parametrize("count", [0, 2])
def test_even_or_zero_etcd_members(count: int) -> None:
    def mutate(d: dict) -> None:
        for i, h in enumerate(d["hosts"]):
            if i >= count:
                h["roles"] = [r for r in h["roles"] if r != "etcd"]

    only(mutate, "hosts", f"{count} host(s) with role etcd")


def test_no_control_plane() -> None:
    def mutate(d: dict) -> None:
        for h in d["hosts"]:
            h["roles"] = [r for r in h["roles"] if r != "control_plane"]

    only(mutate, "hosts", "no host with role control_plane")


def test_single_lb_is_a_warning_not_an_error() -> None:
    only(lambda d: d["hosts"][1].update(roles=["etcd", "control_plane", "worker"]), "hosts", "one host", "warning")
    data = copy.deepcopy(BASE)
    data["hosts"][1]["roles"] = ["etcd", "control_plane", "worker"]
    assert validate_text(yaml.safe_dump(data), FILE).ok


def test_vip_without_lb_hosts() -> None:
    def mutate(d: dict) -> None:
        for h in d["hosts"]:
            h["roles"] = [r for r in h["roles"] if r != "lb"]

    only(mutate, "hosts", "no host with role lb")


def test_vip_equal_to_host_ip() -> None:
    only(lambda d: d["api"].update(vip="192.168.10.12"), "api.vip", "address of a host")


def test_vip_outside_every_host_subnet() -> None:
    only(lambda d: d["api"].update(vip="192.168.11.100"), "api.vip", "outside every lb host's subnet")


def test_host_prefix_decides_the_subnet() -> None:
    assert not problems(lambda d: (d["api"].update(vip="192.168.11.100"), d["network"].update(host_prefix=22)))


def test_vip_inside_service_cidr() -> None:
    found = problems(lambda d: d["api"].update(vip="10.96.0.50"))
    assert any(p.field == "api.vip" and "inside network.service_cidr" in p.found for p in found)


def test_host_ip_inside_pod_cidr() -> None:
    found = problems(lambda d: d["hosts"][0].update(ip="10.244.1.5"))
    assert any(p.field == "hosts[0].ip" and p.host == "k8s-1" and "pod_cidr" in p.found for p in found)


def test_service_and_pod_cidrs_overlap() -> None:
    only(lambda d: d["network"].update(pod_cidr="10.100.0.0/16"), "network.pod_cidr", "overlapping")


def test_cidr_overlapping_host_subnet() -> None:
    found = problems(lambda d: d["network"].update(pod_cidr="192.168.0.0/16"))
    assert any(p.field == "network.pod_cidr" and "host subnet 192.168.10.0/24" in p.found for p in found)


def test_dns_ip_outside_service_cidr() -> None:
    only(lambda d: d["network"].update(dns_ip="10.200.0.10"), "network.dns_ip", "outside")


def test_dns_ip_is_first_service_address() -> None:
    p = only(lambda d: d["network"].update(dns_ip="10.96.0.1"), "network.dns_ip", "reserved")
    assert "kubernetes" in p.expected


@pytest.mark.parametrize("vrid", [0, 256])
def test_virtual_router_id_range(vrid: int) -> None:
    only(lambda d: d["api"].update(virtual_router_id=vrid), "api.virtual_router_id", str(vrid))


def test_unsupported_kubernetes_version_lists_supported() -> None:
    p = only(lambda d: d.update(kubernetes_version="1.20"), "kubernetes_version", "1.20")
    for minor in versions.supported_minors():
        assert minor in p.expected


def test_malformed_kubernetes_version() -> None:
    only(lambda d: d.update(kubernetes_version="latest"), "kubernetes_version", "latest")


def test_unknown_role() -> None:
    p = only(lambda d: d["hosts"][2].update(roles=["etcd", "master"]), "hosts[2].roles[1]", "master")
    assert p.host == "k8s-3"
    assert "control_plane" in p.expected


@pytest.mark.parametrize(
    ("mutate", "field", "suggestion"),
    [
        (lambda d: d.update(kube_proxy_mod="ipvs"), "kube_proxy_mod", "kube_proxy_mode"),
        (lambda d: d["api"].update(virtual_router=5), "api.virtual_router", "virtual_router_id"),
        (lambda d: d["hosts"][0].update(intrface="eth1"), "hosts[0].intrface", "interface"),
        (lambda d: d["certificates"].update(algoritm="rsa-2048"), "certificates.algoritm", "algorithm"),
    ],
)
def test_unknown_key_suggests_the_right_one(mutate: Callable, field: str, suggestion: str) -> None:
    p = only(mutate, field, "unknown key")
    assert f"did you mean {suggestion!r}" in p.expected


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["api"].update(port="https"), "api.port"),
        (lambda d: d["hosts"][0].update(roles="etcd"), "hosts[0].roles"),
        (lambda d: d["ssh"].update(port=70000), "ssh.port"),
        (lambda d: d.update(hosts={"k8s-1": {}}), "hosts"),
        (lambda d: d["api"].update(unicast="maybe"), "api.unicast"),
        (lambda d: d.update(cni="weave"), "cni"),
    ],
)
def test_wrong_types(mutate: Callable, field: str) -> None:
    found = problems(mutate)
    assert found and all(p.severity == "error" for p in found)
    assert field in {p.field for p in found}, [str(p) for p in found]


@pytest.mark.parametrize("value", [1, True, 3232238091])
def test_addresses_must_be_text(value: object) -> None:
    p = only(lambda d: d["hosts"][0].update(ip=value), "hosts[0].ip", str(value))
    assert "written as text" in p.expected


def test_cni_without_a_pinned_version(monkeypatch: pytest.MonkeyPatch) -> None:
    table = copy.deepcopy(versions.table())
    table["minors"]["1.36"]["flannel"] = None
    monkeypatch.setattr(versions, "table", lambda: table)
    p = only(lambda d: d.update(kubernetes_version="1.36", cni="flannel"), "cni", "flannel")
    assert "versions.flannel" in p.expected


@pytest.mark.parametrize("minor", ["1.32", "1.34"])
def test_end_of_life_minor_is_refused_with_its_date(minor: str) -> None:
    p = only(lambda d: d.update(kubernetes_version=minor), "kubernetes_version", "end of life")
    assert "1.35, 1.36, 1.37" in p.expected


def test_ipvs_is_a_deprecation_warning() -> None:
    p = only(lambda d: d.update(kube_proxy_mode="ipvs"), "kube_proxy_mode", "deprecated", "warning")
    assert "nftables" in p.expected


def test_containerd_1_is_refused() -> None:
    only(lambda d: d.update(versions={"containerd": "1.7.24"}), "versions.containerd", "1.7.24")


def test_unpinned_patch_release_is_a_warning() -> None:
    only(lambda d: d.update(kubernetes_version="1.35.1"), "kubernetes_version", "no pinned checksum", "warning")


def test_pod_cidr_too_small_for_a_range_per_node() -> None:
    only(lambda d: d["network"].update(pod_cidr="10.244.0.0/25"), "network.pod_cidr", "room for 0")
    only(lambda d: d["network"].update(pod_cidr="10.244.0.0/23"), "network.pod_cidr", "room for 2 node range(s)")


def test_single_ca_ignores_no_import() -> None:
    only(
        lambda d: d["certificates"].update(authorities="single", import_ca={"etcd": {"cert": "a", "key": "b"}}),
        "certificates.import_ca.etcd",
        "single mode would not use",
    )


def test_missing_required_field() -> None:
    only(lambda d: d["hosts"][1].pop("ip"), "hosts[1].ip", "nothing")


def test_certificate_validity_longer_than_ca() -> None:
    only(lambda d: d["certificates"].update(validity_days=4000), "certificates.validity_days", "4000")


@pytest.mark.parametrize("name", ["K8S-1", "k8s_1", "-k8s", "k8s-", "a" * 64, "node one"])
def test_invalid_host_names_for_certificates(name: str) -> None:
    p = only(lambda d: d["hosts"][0].update(name=name), "hosts[0].name")
    assert "RFC 1123" in p.expected


def test_invalid_extra_san() -> None:
    only(lambda d: d["api"].update(extra_sans=["Bad_Name"]), "api.extra_sans[0]")


def test_lb_port_equal_to_apiserver_port_on_shared_hosts() -> None:
    only(lambda d: d["api"].update(port=6443), "api.port", "6443")


def test_yaml_syntax_error_points_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: book\nhosts:\n  - name: a\n    ip: [1.2.3.4\n  roles: x\n")
    verdict = validate(path)
    assert not verdict.ok
    (p,) = verdict.problems
    assert p.file == str(path) and p.field == "(syntax)" and p.line in (4, 5)


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(EXAMPLE.read_text().replace("cni: calico\n", "cni: calico\ncni: flannel\n"))
    verdict = validate(path)
    assert not verdict.ok
    assert [(p.field, p.found) for p in verdict.problems] == [("cni", "a key given twice")]


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    assert validate(tmp_path / "nope.yaml").problems[0].field == "(file)"
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert validate(tmp_path / "list.yaml").problems[0].found == "a list"
    (tmp_path / "empty.yaml").write_text("")
    assert validate(tmp_path / "empty.yaml").problems[0].found == "an empty file"


def test_every_problem_reported_at_once() -> None:
    def mutate(d: dict) -> None:
        d["api"]["virtual_router_id"] = 999
        d["hosts"][0]["ip"] = "nonsense"
        d["hosts"][2]["roles"] = ["etcd", "boss"]
        d["typo"] = 1

    found = problems(mutate)
    assert {p.field for p in found} == {"api.virtual_router_id", "hosts[0].ip", "hosts[2].roles[1]", "typo"}


def test_every_semantic_problem_reported_at_once() -> None:
    def mutate(d: dict) -> None:
        d["api"]["vip"] = "192.168.10.11"
        d["network"]["dns_ip"] = "10.96.0.1"
        d["certificates"]["validity_days"] = 5000

    found = problems(mutate)
    assert {p.field for p in found} == {"api.vip", "network.dns_ip", "certificates.validity_days"}


def test_load_raises_with_every_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    data = copy.deepcopy(BASE)
    data["hosts"][0]["name"] = data["hosts"][1]["name"]
    data["network"]["dns_ip"] = "10.96.0.1"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InventoryError) as exc:
        load(path)
    assert len(exc.value.errors) == 3
    assert str(path) in str(exc.value)


def test_relative_paths_resolve_against_the_inventory(tmp_path: Path) -> None:
    cluster = load(EXAMPLE)
    assert cluster.bundle_dir == (EXAMPLE.parent / ".." / "bundle").resolve()
    assert cluster.ssh_for(cluster.hosts[0]).sudo is False


def test_host_ssh_overrides() -> None:
    data = copy.deepcopy(BASE)
    data["ssh"] = {"user": "ops"}
    data["hosts"][1]["ssh"] = {"port": 2222}
    verdict = validate_text(yaml.safe_dump(data), FILE)
    assert verdict.cluster is not None
    ssh = verdict.cluster.ssh_for(verdict.cluster.hosts[1])
    assert (ssh.user, ssh.port, ssh.sudo) == ("ops", 2222, True)


def _no_lb(d: dict) -> None:
    for h in d["hosts"]:
        h["roles"] = [r for r in h["roles"] if r != "lb"]


def test_external_load_balancer_takes_no_lb_hosts_and_any_vip() -> None:
    def external(d: dict) -> None:
        _no_lb(d)
        d["api"].update(external=True, vip="203.0.113.10", port=443)

    data = copy.deepcopy(BASE)
    external(data)
    cluster = validate_text(yaml.safe_dump(data), FILE).cluster
    assert cluster is not None and not cluster.lb_hosts
    assert (str(cluster.endpoint_ip), cluster.endpoint_port) == ("203.0.113.10", 443)
    only(lambda d: (external(d), d["api"].pop("vip")), "api.vip", "api.external without api.vip")
    only(lambda d: d["api"].update(external=True), "hosts", "role lb although api.external")


def test_bastion_takes_the_host_login_unless_it_names_its_own() -> None:
    data = copy.deepcopy(BASE)
    data["ssh"] = {"user": "ops", "key": "keys/ops", "bastion": {"host": "jump.example.internal"}}
    data["hosts"][1]["ssh"] = {"host": "k8s-2.internal", "bastion": {"host": "10.0.0.5", "user": "jump", "port": 2200}}
    cluster = validate_text(yaml.safe_dump(data), FILE).cluster
    assert cluster is not None
    first, second = cluster.ssh_for(cluster.hosts[0]), cluster.ssh_for(cluster.hosts[1])
    assert first.bastion is not None and second.bastion is not None
    assert (first.bastion.host, first.bastion.user, first.bastion.port, first.bastion.key) == (
        "jump.example.internal",
        "ops",
        22,
        "keys/ops",
    )
    assert (second.bastion.host, second.bastion.user, second.bastion.port) == ("10.0.0.5", "jump", 2200)
    assert cluster.ssh_address(cluster.hosts[0]) == "192.168.10.11"
    assert cluster.ssh_address(cluster.hosts[1]) == "k8s-2.internal"
    assert str(cluster.hosts[1].address) == "192.168.10.12"  # the cluster address is unchanged


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["hosts"][0].update(ssh={"host": "bad host"}), "hosts[0].ssh.host"),
        (lambda d: d.update(ssh={"bastion": {"user": "x"}}), "ssh.bastion.host"),
        (lambda d: d.update(ssh={"bastion": {"host": "j", "port": 0}}), "ssh.bastion.port"),
        (lambda d: d.update(ssh={"bastion": {"host": "j", "proxy": "x"}}), "ssh.bastion.proxy"),
    ],
)
def test_bad_ssh_addresses_name_their_field(mutate: Callable, field: str) -> None:
    assert field in [p.field for p in problems(mutate)]


# Any document at all gives a verdict, never a traceback.
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=20,
)
KEYS = list(BASE)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_fuzz_arbitrary_documents(doc: object) -> None:
    verdict = validate_text(yaml.safe_dump(doc), FILE)
    assert verdict.ok or verdict.problems


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KEYS), documents, st.integers(0, 2), st.sampled_from(["name", "ip", "roles", "ssh", "x"]))
def test_fuzz_mutated_example(key: str, value: object, index: int, host_key: str) -> None:
    data = copy.deepcopy(BASE)
    data[key] = value
    data["hosts"] = copy.deepcopy(BASE["hosts"])
    data["hosts"][index][host_key] = value
    verdict = validate_text(yaml.safe_dump(data), FILE)
    assert verdict.ok or all(isinstance(p, Problem) and p.expected for p in verdict.problems)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_raw_text(text: str) -> None:
    verdict = validate_text(text, FILE)
    assert verdict.ok or verdict.problems
