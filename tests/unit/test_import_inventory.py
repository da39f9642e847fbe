"""`fab import-inventory`: kubeasz and kubespray inventories written for these tests (tests/unit/fixtures/import)
converted to kubefab inventories; every source setting accounted for in the report; malformed sources give an
error naming the file and the line; an incomplete result is written with a NOT VALID YET header."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from invoke.context import Context
from invoke.exceptions import Exit

from kubefab.playbooks import versions
from kubefab.playbooks.importers import SourceError, convert, document
from kubefab.playbooks.importers.ansible import host_range, read
from kubefab.playbooks.importers.common import Candidate, Draft, add_hosts, valid_name
from kubefab.playbooks.inventory import validate, validate_text
from kubefab.playbooks.tasks.imports import import_inventory

F = Path(__file__).parent / "fixtures" / "import"
KUBEASZ = F / "kubeasz" / "k8s-prod" / "hosts"
KUBEASZ_OLD = F / "kubeasz-old" / "hosts"
KUBESPRAY = F / "kubespray" / "mycluster"
KUBESPRAY_INI = F / "kubespray-ini" / "inventory.ini"


def entries(imported, kind: str) -> list[str]:
    return [f"{e.source} | {e.target} | {e.note}" for e in imported.report.of(kind)]


def mentions(imported, *words: str) -> bool:
    return any(all(w in f"{e.source} {e.target} {e.note}" for w in words) for e in imported.report.entries)


def is_valid(imported, tmp_path: Path) -> bool:
    text, problems = document(imported, tmp_path / "out.yaml")
    return not [p for p in problems if p.severity == "error"] and validate_text(text, tmp_path / "out.yaml").ok


def test_kubeasz(tmp_path: Path) -> None:
    imp = convert(KUBEASZ)
    d = imp.data
    assert imp.format == "kubeasz"
    # The directory's name (CLUSTER_NAME agrees); K8S_VER v1.36.1 of config.yml, unpinned: the minor, 1.36.x pinned
    assert d["name"] == "k8s-prod" and d["kubernetes_version"] == "1.36"
    assert mentions(imp, "K8S_VER", f"which is {versions.stack('1.36').kubernetes}", "1.36.1", "--from-source")
    assert d["network"] == {
        "service_cidr": "10.68.0.0/16",
        "pod_cidr": "172.20.0.0/16",
        "domain": "cluster.local",
        "dns_ip": "10.68.0.2",
    }  # kubeasz's CoreDNS address: the second of SERVICE_CIDR
    assert d["api"] == {
        "apiserver_port": 6443,
        "vip": "10.20.0.250",
        "port": 8443,
        "extra_sans": ["10.1.1.1", "k8s.prod.example"],
    }
    assert (d["cni"], d["kube_proxy_mode"], d["container_runtime"]) == ("calico", "ipvs", "containerd")
    assert d["ssh"] == {"user": "ops", "key": "~/.ssh/kubeasz"}
    hosts = {h["name"]: (h["ip"], h["roles"]) for h in d["hosts"]}
    assert hosts["master-01"] == ("10.20.0.11", ["etcd", "control_plane"])
    assert hosts["master-03"] == ("10.20.0.13", ["etcd", "control_plane"])  # k8s_nodename Master_03, made valid
    assert hosts["node-10-20-0-22"] == ("10.20.0.22", ["worker"])  # no k8s_nodename: kubeasz names it by its IP
    # The LB_ROLE=master host takes the first lb slot: kubefab gives the first lb host the highest priority.
    assert [h["ip"] for h in d["hosts"] if "lb" in h["roles"]] == ["10.20.0.32", "10.20.0.31"]
    assert mentions(imp, "Master_03 -> master-03")
    assert mentions(imp, "NODE_PORT_RANGE") and mentions(imp, "bin_dir", "ca_dir")
    assert mentions(imp, "[chrony]", "10.20.0.11")
    assert mentions(imp, "config.yml", "INSTALL_SOURCE", "CA_EXPIRY", "MAX_PODS")
    assert mentions(imp, "cordoned kubelet", "10.20.0.11")
    assert is_valid(imp, tmp_path)


def test_old_kubeasz_unsupported_values_keep_defaults(tmp_path: Path) -> None:
    imp = convert(KUBEASZ_OLD)
    d = imp.data
    assert "cni" not in d and "container_runtime" not in d and d["kubernetes_version"] == versions.default_minor()
    unsupported = entries(imp, "unsupported")
    assert any("CONTAINER_RUNTIME" in e and "'docker'" in e and "containerd stands" in e for e in unsupported)
    assert any("CLUSTER_NETWORK" in e and "'kube-router'" in e and "calico stands" in e for e in unsupported)
    assert any("K8S_VER" in e and "'v1.20.4'" in e and f"{versions.default_minor()} stands" in e for e in unsupported)
    assert d["network"]["domain"] == "cluster.local"  # "cluster.local." as kubeasz 2.x wrote it
    assert mentions(imp, "[kube-master]", "kube_master")
    assert [h["name"] for h in d["hosts"]] == ["etcd1", "etcd2", "etcd3", "node-192-168-122-103"]
    # Two masters and no ex_lb: the first two get the lb role, and the VIP is what is left to fill in.
    assert [h["name"] for h in d["hosts"] if "lb" in h["roles"]] == ["etcd1", "etcd2"]
    assert [e.target for e in imp.report.of("missing")] == ["api.vip"]
    text, problems = document(imp, tmp_path / "out.yaml")
    assert text.splitlines()[3].startswith("# NOT VALID YET")
    assert "#   missing: api.vip" in text
    assert {p.field for p in problems} == {"api.vip"}


def test_kubespray_yaml_with_group_vars(tmp_path: Path) -> None:
    imp = convert(KUBESPRAY)  # the directory: hosts.yaml is found in it
    d = imp.data
    assert imp.format == "kubespray" and imp.source.name == "hosts.yaml"
    assert d["name"] == "mycluster" and d["kubernetes_version"] == "1.35.4"
    assert d["network"] == {
        "service_cidr": "10.233.0.0/18",
        "pod_cidr": "10.233.64.0/18",
        "domain": "cluster.local",  # dns_domain: "{{ cluster_name }}", resolved
        "dns_ip": "10.233.0.3",
    }  # skydns_server is Jinja: kubespray's default, the third
    # loadbalancer_apiserver: an external load balancer, kept (no HAProxy or keepalived, no lb hosts)
    assert d["api"]["external"] is True and d["api"]["vip"] == "10.3.0.100" and d["api"]["port"] == 8443
    assert d["api"]["extra_sans"] == ["10.3.0.100", "k8s.example.internal", "api.mycluster.example"]
    assert d["ssh"] == {"user": "ubuntu", "sudo": True}  # all:vars, with node-3's own user as an override
    hosts = {h["name"]: h for h in d["hosts"]}
    assert hosts["node1"]["ip"] == "10.3.0.1"  # ip (where kubespray binds) is the cluster address
    assert hosts["node1"]["ssh"] == {"host": "203.0.113.11"}  # ansible_host: where SSH connects
    assert "ssh" not in hosts["node2"]  # its ansible_host is its ip
    assert hosts["node-3"] == {
        "name": "node-3",
        "ip": "10.3.0.3",
        "roles": ["etcd", "control_plane", "lb"][:2],
        "ssh": {"user": "admin"},
    }
    assert [h for h in hosts if "lb" in hosts[h]["roles"]] == []
    assert hosts["node4"]["ssh"] == {"port": 2200}  # host_vars/node4.yml
    assert mentions(imp, "ansible_host", "hosts[0].ssh.host", "203.0.113.11")
    assert mentions(imp, "etcd_member_name", "kubefab names etcd members after their hosts")
    assert mentions(imp, "node_labels", "host node4")
    assert mentions(imp, "etcd.yml", "etcd_deployment_type")
    assert mentions(imp, "skydns_server", "Jinja")
    assert mentions(imp, "loadbalancer_apiserver_port", "HAProxy")
    assert is_valid(imp, tmp_path)


def test_kubespray_ini_incomplete(tmp_path: Path) -> None:
    imp = convert(KUBESPRAY_INI)
    d = imp.data
    hosts = {h["name"]: h for h in d["hosts"]}
    assert "jump" not in hosts and mentions(imp, "[bastion] jump", "ssh.bastion")
    assert d["ssh"]["bastion"] == {"host": "198.51.100.7", "user": "jumper"}
    assert hosts["cp1"]["ip"] == "10.5.0.11"  # `# ip=10.5.0.111` is a comment
    assert hosts["cp1"]["roles"] == ["etcd", "control_plane", "lb"]  # etcd through [etcd:children]
    assert hosts["cp2"]["ssh"] == {"port": 2222}
    assert "ip" not in hosts["worker2"]
    assert mentions(imp, "ansible_ssh_common_args", "the jump through the bastion")
    assert d["network"] == {"pod_cidr": "10.5.128.0/17"}
    assert {e.target for e in imp.report.of("missing")} == {"hosts[4].ip", "api.vip"}
    assert mentions(imp, "network.service_cidr", "10.96.0.0/12")


def test_every_source_setting_is_in_the_report() -> None:
    for src in (KUBEASZ, KUBEASZ_OLD, KUBESPRAY / "hosts.yaml", KUBESPRAY_INI):
        inv = read(src)
        names = {k for variables in inv.hosts.values() for k in variables}
        names |= {k for group in inv.groups.values() for k in group.vars}
        if src == KUBEASZ:
            names |= set(yaml.safe_load((src.parent / "config.yml").read_text()))
        imp = convert(src)
        silent = [n for n in names if not mentions(imp, n)]
        assert not silent, f"{src}: not in the report: {silent}"


def test_not_valid_header_lines_match_the_written_file(tmp_path: Path) -> None:
    out = tmp_path / "cluster.yaml"
    text, problems = document(convert(KUBESPRAY_INI), out)
    out.write_text(text)
    written = validate(out).problems
    assert [(p.field, p.line) for p in written] == [(p.field, p.line) for p in problems]
    lines = text.splitlines()
    assert lines[3].startswith("# NOT VALID YET")
    assert lines[written[0].line - 1] == "- name: worker2"
    assert f"#   error: {written[0]}" in lines


@pytest.mark.parametrize(
    ("file", "line", "fragment"),
    [
        ("section.ini", 4, "malformed section header '[kube_master'"),
        ("hostvar.ini", 3, "expected name=value after the host name, found 'ansible_host'"),
        ("quote.ini", 2, "No closing quotation"),
        ("range.ini", 2, "malformed host range 'master[01-03].example.com'"),
        ("syntax.yaml", 5, "invalid YAML"),
        ("hosts-list.yaml", 4, "group kube_control_plane: hosts must be a mapping, found a list"),
        ("unknown-key.yaml", 4, "group kube_node: unknown key 'host' (expected hosts, children or vars)"),
    ],
)
def test_malformed_sources_name_file_and_line(file: str, line: int, fragment: str) -> None:
    with pytest.raises(SourceError) as err:
        convert(F / "bad" / file)
    assert str(err.value).startswith(f"{F / 'bad' / file}:{line}: ")
    assert fragment in str(err.value)


def test_malformed_group_vars_file() -> None:
    with pytest.raises(SourceError, match=r"group_vars/k8s_cluster/k8s-cluster\.yml:1: expected a mapping"):
        convert(F / "bad" / "groupvars" / "inventory.ini")


def test_format_detection_and_override() -> None:
    with pytest.raises(SourceError, match=r"neither a kubeasz inventory .* name the format with --tool"):
        convert(F / "bad" / "neither.ini")
    with pytest.raises(SourceError, match="no inventory in this directory"):
        convert(F / "bad")
    with pytest.raises(SourceError, match="unknown format 'ansible'"):
        convert(KUBEASZ, "ansible")
    # Read as kubeasz, a kubespray file's kube_control_plane means nothing, and the report says so.
    imp = convert(KUBESPRAY_INI, "kubeasz", name="Other_Name")
    assert imp.data["name"] == "other-name"
    assert {h["name"]: h["roles"] for h in imp.data["hosts"]}["cp1"] == ["etcd"]
    assert mentions(imp, "[kube_control_plane]", "a group kubefab does not use", "cp1, cp2, cp3")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("Node_1", "node-1"),
        ("10.0.0.1", "node-10-0-0-1"),
        ("-edge-", "edge"),
        ("K8S.Example.COM", "k8s.example.com"),
        ("a" * 70, "a" * 63),
        ("__", "node"),
    ],
)
def test_valid_names(name: str, valid: str) -> None:
    assert valid_name(name) == valid


def test_names_made_unique() -> None:
    draft = Draft()
    add_hosts(
        draft,
        [
            Candidate("node-1", "node-1", "10.0.0.1", ("worker",), "a"),
            Candidate("Node_1", "Node_1", "10.0.0.2", ("worker",), "b"),
        ],
    )
    assert [h["name"] for h in draft.data["hosts"]] == ["node-1", "node-1-2"]
    assert [e.note.split(" (")[0] for e in draft.report.of("renamed")] == ["Node_1 -> node-1-2"]


def test_task_writes_valid_inventory(tmp_path: Path) -> None:
    out = tmp_path / "inv" / "prod.yaml"
    import_inventory(Context(), str(KUBEASZ), out=str(out))
    assert validate(out).ok
    assert out.read_text().startswith(f"# Imported by `kubefab import-inventory` from {KUBEASZ} (kubeasz).")
    with pytest.raises(Exit) as err:
        import_inventory(Context(), str(KUBESPRAY), out=str(out))
    assert err.value.code == 2 and "--force" in str(err.value.message)
    import_inventory(Context(), str(KUBESPRAY), out=str(out), force=True)
    assert "name: mycluster" in out.read_text()


def test_task_writes_incomplete_inventory_and_fails(tmp_path: Path) -> None:
    out = tmp_path / "ini.yaml"
    with pytest.raises(Exit) as err:
        import_inventory(Context(), str(KUBESPRAY_INI), out=str(out))
    assert err.value.code == 1
    assert "NOT VALID YET" in str(err.value.message) and "fill in api.vip" in str(err.value.message)
    assert "# NOT VALID YET" in out.read_text()


def test_task_writes_nothing_for_a_malformed_source(tmp_path: Path) -> None:
    out = tmp_path / "bad.yaml"
    with pytest.raises(Exit) as err:
        import_inventory(Context(), str(F / "bad" / "quote.ini"), out=str(out))
    assert err.value.code == 1 and "quote.ini:2:" in str(err.value.message)
    assert not out.exists()
    with pytest.raises(Exit, match="--out FILE is required"):
        import_inventory(Context(), str(KUBEASZ))


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("node[1:3]", ["node1", "node2", "node3"]),
        ("db[01:10:4].example.com", ["db01.example.com", "db05.example.com", "db09.example.com"]),
        ("rack[a:b]-[1:2]", ["racka-1", "racka-2", "rackb-1", "rackb-2"]),
        ("10.0.0.[7:8]", ["10.0.0.7", "10.0.0.8"]),
        ("plain", ["plain"]),
    ],
)
def test_host_ranges_expand_as_ansible_does(pattern: str, names: list[str]) -> None:
    assert host_range(pattern, "f", 1) == names


def test_ranges_in_a_kubespray_ini_become_hosts(tmp_path: Path) -> None:
    src = tmp_path / "inventory.ini"
    src.write_text(
        "[kube_control_plane]\ncp[1:3] ansible_user=ops\n[etcd:children]\nkube_control_plane\n"
        "[kube_node]\n10.0.0.[21:22]\n[k8s_cluster:children]\nkube_control_plane\nkube_node\n"
        "[k8s_cluster:vars]\nansible_ssh_common_args='-o ProxyJump=ops@10.0.0.5:2222'\n"
    )
    d = convert(src, "kubespray").data
    assert [h["name"] for h in d["hosts"]] == ["cp1", "cp2", "cp3", "node-10-0-0-21", "node-10-0-0-22"]
    assert d["ssh"]["bastion"] == {"host": "10.0.0.5", "user": "ops", "port": 2222}  # from the ProxyJump


def test_kubeasz_name_is_the_directory_not_the_default_cluster_name(tmp_path: Path) -> None:
    for cluster in ("prod-a", "prod-b"):
        target = tmp_path / "clusters" / cluster
        target.mkdir(parents=True)
        (target / "hosts").write_text(KUBEASZ.read_text())
        config = (
            (KUBEASZ.parent / "config.yml").read_text().replace('CLUSTER_NAME: "k8s-prod"', 'CLUSTER_NAME: "cluster1"')
        )
        (target / "config.yml").write_text(config)
        imp = convert(target / "hosts")
        assert imp.data["name"] == cluster
        assert mentions(imp, "CLUSTER_NAME", "cluster1", "the same for every cluster", cluster)
