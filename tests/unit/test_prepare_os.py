"""The `prepare` plan per OS family, from facts parsed out of sample output of `playbooks.facts.COMMAND`: yum or
dnf with RHEL package names, apt on Debian, SELinux permissive, and firewalld per `firewall:` setting, with the
port table of every role (the firewalld step's shell runs in tests/tools/test_firewalld_step.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from kubefab.playbooks import components
from kubefab.playbooks.facts import Facts, parse
from kubefab.playbooks.inputs import Inputs, stack_of
from kubefab.playbooks.inventory import validate_text
from kubefab.playbooks.model import Cluster
from kubefab.playbooks.plan import Plan, Step
from kubefab.playbooks.secrets import generate
from tests.conftest import EXAMPLE

COMMON = (
    "arch=x86_64\ncgroup_fs=cgroup2fs\nswap=\nfstab_swap=\nntp_synchronized=yes\ntime=1700000000\nsystemd=systemd\n"
)
OUTPUT = {
    "centos7": "os_id=centos\nos_version=7\nos_like=rhel fedora\nselinux=Enforcing\nfirewalld=active\n"
    "package_manager=yum\nhostname=node\n",
    "stream9": "os_id=centos\nos_version=9\nos_like=rhel fedora\nselinux=Enforcing\nfirewalld=active\n"
    "package_manager=dnf\nhostname=node\n",
    "rocky9": "os_id=rocky\nos_version=9.4\nos_like=rhel centos fedora\nselinux=Enforcing\nfirewalld=active\n"
    "package_manager=dnf\nhostname=node\n",
    "debian12": "os_id=debian\nos_version=12\nos_like=\nselinux=\nfirewalld=inactive\npackage_manager=apt-get\n"
    "hostname=node\n",
}
RHEL = ("centos7", "stream9", "rocky9")
ROLES = {
    "all": ["etcd", "control_plane", "worker", "lb"],
    "etcd": ["etcd"],
    "cp": ["control_plane"],
    "lb": ["lb"],
    "worker": ["worker"],
}


def facts(os: str, **changes: str) -> Facts:
    text = COMMON + OUTPUT[os] + "".join(f"{k}={v}\n" for k, v in changes.items())
    return parse(text)


def cluster(**settings: object) -> Cluster:
    """The example inventory plus one host per single role, with `settings` on top."""
    data = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text())) | settings
    data["hosts"] = [
        {"name": f"h-{label}", "ip": f"192.168.10.{20 + i}", "roles": roles}
        for i, (label, roles) in enumerate(ROLES.items())
    ]
    data["hosts"] += [
        {"name": "h-etcd2", "ip": "192.168.10.30", "roles": ["etcd"]},
        {"name": "h-lb2", "ip": "192.168.10.31", "roles": ["lb"]},
    ]
    verdict = validate_text(yaml.safe_dump(data), Path("test.yaml"))
    assert verdict.ok, "\n".join(map(str, verdict.problems))
    assert verdict.cluster is not None
    return verdict.cluster


def plan(c: Cluster, host: str, f: Facts) -> Plan:
    inputs = Inputs(c, stack_of(c), generate(), {}, facts={h.name: f for h in c.hosts})
    return components.named("prepare").host_plan(inputs, c.host(f"h-{host}"))


def steps(p: Plan, word: str) -> list[Step]:
    return [s for s in p.steps if word in s.name]


def only(p: Plan, word: str) -> Step:
    found = steps(p, word)
    assert len(found) == 1, [s.name for s in p.steps]
    return found[0]


@pytest.fixture(scope="module")
def example() -> Cluster:
    return cluster()


def test_sample_output_parses_to_the_families() -> None:
    assert [facts(os).family for os in OUTPUT] == ["rhel", "rhel", "rhel", "debian"]
    assert facts("centos7").package_manager == "yum"
    assert facts("rocky9").package_manager == "dnf"
    assert facts("stream9").selinux == "Enforcing" and facts("stream9").firewalld_active
    assert all(facts(os).supported for os in OUTPUT)


@pytest.mark.parametrize(("os", "manager"), [("centos7", "yum"), ("stream9", "dnf"), ("rocky9", "dnf")])
def test_rhel_installs_with_yum_or_dnf_and_rhel_names(example: Cluster, os: str, manager: str) -> None:
    step = only(plan(example, "all", facts(os)), "packages")
    assert step.run == f"{manager} install -y -q haproxy keepalived conntrack-tools socat ipset iptables"
    # Checked by capability: EL9 has iptables-nft, which provides iptables, and no package named iptables.
    assert step.unless == (
        "rpm -q --whatprovides haproxy keepalived conntrack-tools socat ipset iptables >/dev/null 2>&1"
    )
    assert "apt-get" not in step.run + step.unless


@pytest.mark.parametrize(("mode", "extra"), [("ipvs", "ipvsadm"), ("nftables", "nftables")])
def test_rhel_proxy_mode_packages(mode: str, extra: str) -> None:
    step = only(plan(cluster(kube_proxy_mode=mode), "worker", facts("stream9")), "packages")
    assert step.run == f"dnf install -y -q conntrack-tools socat ipset iptables {extra}"


def test_hosts_without_packages_get_no_package_step(example: Cluster) -> None:
    assert steps(plan(example, "etcd", facts("stream9")), "packages") == []
    assert (
        only(plan(example, "lb", facts("centos7")), "packages").run
        == "yum install -y -q haproxy keepalived socat iptables"
    )


def test_debian_installs_with_apt_and_debian_names(example: Cluster) -> None:
    p = plan(example, "all", facts("debian12"))
    step = only(p, "packages")
    assert step.run == (
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy keepalived conntrack socat ipset iptables"
    )
    assert step.unless.startswith("dpkg -s haproxy keepalived conntrack ")
    assert not steps(p, "SELinux") and not steps(p, "firewalld")
    assert not any(word in s.run for s in p.steps for word in ("yum", "dnf", "rpm", "setenforce", "firewall-cmd"))


@pytest.mark.parametrize("os", RHEL)
def test_selinux_permissive_on_rhel(example: Cluster, os: str) -> None:
    step = only(plan(example, "etcd", facts(os)), "SELinux")
    assert "setenforce 0" in step.run
    assert "s/^SELINUX=enforcing/SELINUX=permissive/' /etc/selinux/config" in step.run
    assert "getenforce" in step.unless and "/etc/selinux/config" in step.unless


def test_no_selinux_step_without_selinux(example: Cluster) -> None:
    assert steps(plan(example, "etcd", facts("stream9", selinux="")), "SELinux") == []


@pytest.mark.parametrize(
    ("host", "ports", "rules"),
    [
        ("etcd", ["2379-2380/tcp"], []),
        ("cp", ["6443/tcp", "10257/tcp", "10259/tcp"], []),
        ("lb", ["8443/tcp"], ['rule protocol value="vrrp" accept']),
        (
            "worker",
            ["10250/tcp", "10256/tcp", "30000-32767/tcp", "179/tcp", "4789/udp"],
            ['rule protocol value="4" accept'],
        ),
        (
            "all",
            [
                "2379-2380/tcp",
                "6443/tcp",
                "10257/tcp",
                "10259/tcp",
                "8443/tcp",
                "10250/tcp",
                "10256/tcp",
                "30000-32767/tcp",
                "179/tcp",
                "4789/udp",
            ],
            ['rule protocol value="vrrp" accept', 'rule protocol value="4" accept'],
        ),
    ],
)
@pytest.mark.parametrize("os", RHEL)
def test_firewalld_open_per_role(example: Cluster, os: str, host: str, ports: list[str], rules: list[str]) -> None:
    step = only(plan(example, host, facts(os)), "firewalld")
    assert step.name == f"firewalld opens {' '.join(ports)}"
    assert step.run == " && ".join(
        [f"firewall-cmd -q --permanent --add-port={p}" for p in ports]
        + [f"firewall-cmd -q --permanent --add-rich-rule='{r}'" for r in rules]
        + ["firewall-cmd -q --reload"]
    )
    for r in rules:
        assert f"firewall-cmd -q --query-rich-rule='{r}'" in step.unless


def test_firewalld_ports_follow_the_settings() -> None:
    c = cluster(cni="flannel", api={"vip": "192.168.10.100", "port": 9443, "apiserver_port": 7443})
    assert components.firewall_ports(c, c.host("h-worker")) == ("10250/tcp", "10256/tcp", "30000-32767/tcp", "8472/udp")
    assert components.firewall_rich_rules(c, c.host("h-worker")) == ()
    assert components.firewall_ports(c, c.host("h-cp"))[0] == "7443/tcp"
    assert components.firewall_ports(c, c.host("h-lb")) == ("9443/tcp",)


@pytest.mark.parametrize("os", RHEL)
def test_firewalld_disable(os: str) -> None:
    p = plan(cluster(firewall="disable"), "all", facts(os))
    step = only(p, "firewalld")
    assert step.name == "firewalld stopped and disabled"
    assert step.run == "systemctl disable --now firewalld"
    assert step.unless == "! systemctl is-active -q firewalld && ! systemctl is-enabled -q firewalld"
    assert not any("firewall-cmd" in s.run for s in p.steps)


def test_firewalld_enabled_but_stopped_is_disabled_too() -> None:
    """Stopped now but enabled: it would start at the next boot and block the cluster's ports."""
    stopped = facts("stream9", firewalld="inactive", firewalld_enabled="enabled")
    assert stopped.firewalld_enabled and not stopped.firewalld_active
    assert (
        only(plan(cluster(firewall="disable"), "all", stopped), "firewalld").run == "systemctl disable --now firewalld"
    )
    gone = facts("stream9", firewalld="inactive", firewalld_enabled="disabled")
    assert steps(plan(cluster(firewall="disable"), "all", gone), "firewalld") == []


@pytest.mark.parametrize("os", RHEL)
def test_firewall_skip_touches_nothing(os: str) -> None:
    p = plan(cluster(firewall="skip"), "all", facts(os))
    assert not any("firewall" in s.name + s.run + s.unless for s in p.steps)


def test_inactive_firewalld_is_left_alone(example: Cluster) -> None:
    assert steps(plan(example, "all", facts("stream9", firewalld="inactive")), "firewalld") == []


@pytest.mark.parametrize("os", [*RHEL, "debian12"])
def test_common_files_and_steps_on_every_os(example: Cluster, os: str) -> None:
    p = plan(example, "all", facts(os))
    assert {f.path for f in p.files} == {"/etc/sysctl.d/99-kubernetes.conf", "/etc/modules-load.d/kubernetes.conf"}
    assert [s.name for s in p.steps[:3]] == [
        "swap off, now and at boot",
        "kernel modules overlay, br_netfilter",
        "sysctl settings applied",
    ]
    assert p.blocks[0].path == "/etc/hosts"


@pytest.mark.parametrize(("stub", "expected"), [("yes", "resolvConf: /run/systemd/resolve/resolv.conf"), ("no", None)])
def test_kubelet_skips_the_systemd_resolved_stub(example: Cluster, stub: str, expected: str | None) -> None:
    """On Ubuntu /etc/resolv.conf names 127.0.0.53, which pods cannot reach: kubelet gets resolved's upstream list."""
    f = facts("debian12", resolv_stub=stub)
    inputs = Inputs(example, stack_of(example), generate(), {}, facts={h.name: f for h in example.hosts})
    p = components.phase_plan(inputs, example.host("h-worker"), "nodes")
    assert p is not None
    config = next(x.content for x in p.files if x.path == "/var/lib/kubelet/config.yaml").decode()
    if expected:
        assert expected in config
    else:
        assert "resolvConf" not in config
