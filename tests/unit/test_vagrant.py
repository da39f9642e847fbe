"""The Vagrant inventory: the Vagrantfile's settings block read as Vagrant reads it, inventory/vagrant.yaml in
agreement with it, `vagrant ssh-config` output (samples written for these tests) parsed, and
`fab vagrant.inventory` run against a stand-in `vagrant`."""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from invoke.context import MockContext
from invoke.exceptions import Exit
from invoke.runners import Result

from kubefab.playbooks import vagrant
from kubefab.playbooks.inventory import load
from kubefab.playbooks.tasks.vagrant import inventory as inventory_task

ROOT = Path(__file__).parents[2]
VAGRANTFILE = ROOT / "Vagrantfile"
TEXT = VAGRANTFILE.read_text()

# `vagrant ssh-config` with VirtualBox: Vagrant's route is a NAT port forward on 127.0.0.1.
VIRTUALBOX = """Host k8s-1
  HostName 127.0.0.1
  User vagrant
  Port 2222
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /home/op/kubefab/.vagrant/machines/k8s-1/virtualbox/private_key
  IdentitiesOnly yes
  LogLevel FATAL
  PubkeyAcceptedKeyTypes +ssh-rsa
  HostKeyAlgorithms +ssh-rsa

Host k8s-2
  HostName 127.0.0.1
  User vagrant
  Port 2200
  IdentityFile "/home/op/my vms/.vagrant/machines/k8s-2/virtualbox/private_key"
  IdentitiesOnly yes

Host k8s-3
  HostName 127.0.0.1
  User vagrant
  Port 2201
  IdentityFile /home/op/kubefab/.vagrant/machines/k8s-3/virtualbox/private_key
"""
# With libvirt, Vagrant reaches each VM on its management network, port 22; k8s-3 is reached on its private IP.
LIBVIRT = """Host k8s-1
  HostName=192.168.121.17
  User=vagrant
  Port=22
  IdentityFile=/home/op/kubefab/.vagrant/machines/k8s-1/libvirt/private_key
Host k8s-2
  HostName 192.168.121.201
  User deploy
  Port 22
  IdentityFile /home/op/kubefab/.vagrant/machines/k8s-2/libvirt/private_key
Host k8s-3
  HostName 192.168.56.13
  User vagrant
  Port 2022
  IdentityFile /home/op/kubefab/.vagrant/machines/k8s-3/libvirt/private_key
"""


def test_settings_are_the_vagrantfile_defaults() -> None:
    s = vagrant.settings(TEXT, {})
    assert s["DISTRO"] == "centos9" and s["CPUS"] == "2" and s["MEMORY"] == "2048" and s["COUNT"] == "3"
    assert vagrant.machines(s) == [
        ("k8s-1", IPv4Address("192.168.56.11")),
        ("k8s-2", IPv4Address("192.168.56.12")),
        ("k8s-3", IPv4Address("192.168.56.13")),
    ]
    assert vagrant.vip(s) == IPv4Address("192.168.56.100")
    assert s["IFACE"] == "eth1"


def test_settings_follow_the_environment() -> None:
    s = vagrant.settings(
        TEXT,
        {
            "KUBEFAB_IP_PREFIX": "10.9.8",
            "KUBEFAB_FIRST_OCTET": "21",
            "KUBEFAB_VIP_OCTET": "5",
            "KUBEFAB_IFACE": "enp0s8",
            "UNRELATED": "x",
        },
    )
    assert [str(ip) for _, ip in vagrant.machines(s)] == ["10.9.8.21", "10.9.8.22", "10.9.8.23"]
    data = vagrant.inventory(s)
    assert data["api"] == {"vip": "10.9.8.5", "interface": "enp0s8"}


def test_settings_errors() -> None:
    plain_iface, count = re.subn(r"^IFACE\s*=.*$", 'IFACE = "eth1"', TEXT, flags=re.M)
    assert count == 1
    with pytest.raises(ValueError, match="no setting line for IFACE"):
        vagrant.settings(plain_iface, {})
    with pytest.raises(ValueError, match="Vagrantfile settings"):
        vagrant.machines(vagrant.settings(TEXT, {"KUBEFAB_IP_PREFIX": "192.168.300"}))


def test_checked_in_inventory_agrees_with_the_vagrantfile() -> None:
    cluster = load(ROOT / "inventory" / "vagrant.yaml")
    s = vagrant.settings(TEXT, {})
    assert [(h.name, h.address) for h in cluster.hosts] == vagrant.machines(s)
    assert cluster.api.vip == vagrant.vip(s)
    assert cluster.api.interface == s["IFACE"]
    assert [h.name for h in cluster.lb_hosts] == ["k8s-1", "k8s-2"]
    assert len(cluster.etcd_hosts) == len(cluster.control_plane) == len(cluster.workers) == 3
    assert (cluster.ssh.user, cluster.ssh.sudo, cluster.ssh.key) == ("vagrant", True, s["SSH_KEY"])


def test_parse_virtualbox_ssh_config() -> None:
    entries = vagrant.parse_ssh_config(VIRTUALBOX)
    assert list(entries) == ["k8s-1", "k8s-2", "k8s-3"]
    assert entries["k8s-1"] == vagrant.SSHEntry(
        "k8s-1", "127.0.0.1", "vagrant", 2222, ("/home/op/kubefab/.vagrant/machines/k8s-1/virtualbox/private_key",)
    )
    assert entries["k8s-2"].identity_files == ("/home/op/my vms/.vagrant/machines/k8s-2/virtualbox/private_key",)
    assert entries["k8s-3"].port == 2201


def test_inventory_from_virtualbox_ssh_config(tmp_path: Path) -> None:
    data = vagrant.inventory(vagrant.settings(TEXT, {}), vagrant.parse_ssh_config(VIRTUALBOX))
    assert "key" not in data["ssh"]
    # Each VM its own key; the NAT forward (127.0.0.1:2222) is Vagrant's route, not the private network's.
    assert [h["ssh"] for h in data["hosts"]] == [
        {"key": "/home/op/kubefab/.vagrant/machines/k8s-1/virtualbox/private_key"},
        {"key": "/home/op/my vms/.vagrant/machines/k8s-2/virtualbox/private_key"},
        {"key": "/home/op/kubefab/.vagrant/machines/k8s-3/virtualbox/private_key"},
    ]
    (tmp_path / "v.yaml").write_text(vagrant.render(data))
    cluster = load(tmp_path / "v.yaml")
    assert cluster.ssh_for(cluster.host("k8s-2")).port == 22


def test_inventory_from_libvirt_ssh_config() -> None:
    data = vagrant.inventory(vagrant.settings(TEXT, {}), vagrant.parse_ssh_config(LIBVIRT))
    hosts = {h["name"]: h["ssh"] for h in data["hosts"]}
    assert hosts["k8s-2"]["user"] == "deploy"
    assert hosts["k8s-3"]["port"] == 2022  # Vagrant reaches it on the private IP itself: its port is the one
    assert "port" not in hosts["k8s-1"]


def test_ssh_config_errors() -> None:
    with pytest.raises(ValueError, match="line 1: hostname before any Host line"):
        vagrant.parse_ssh_config("HostName 127.0.0.1\nHost k8s-1\n")
    with pytest.raises(ValueError, match="line 3: Port 'ssh' is not a number"):
        vagrant.parse_ssh_config("Host k8s-1\n  User vagrant\n  Port ssh\n")
    with pytest.raises(ValueError, match=r"lists no k8s-2, k8s-3: is it up \(`vagrant up`\)"):
        vagrant.inventory(vagrant.settings(TEXT, {}), vagrant.parse_ssh_config(VIRTUALBOX.split("\n\n")[0]))


def test_task_writes_the_inventory(tmp_path: Path) -> None:
    out = tmp_path / "vagrant.yaml"
    c = MockContext(run={"vagrant ssh-config": Result(stdout=VIRTUALBOX)})
    inventory_task(c, out=str(out), vagrantfile=str(VAGRANTFILE))
    cluster = load(out)
    assert (
        cluster.ssh_for(cluster.host("k8s-3")).key == "/home/op/kubefab/.vagrant/machines/k8s-3/virtualbox/private_key"
    )
    assert cluster.api.interface == "eth1"


def test_task_says_which_vm_is_missing(tmp_path: Path) -> None:
    out = tmp_path / "vagrant.yaml"
    stderr = "The provider for this Vagrant-managed machine is reporting that it is not yet ready for SSH."
    c = MockContext(run={"vagrant ssh-config": Result(stdout=VIRTUALBOX.split("\n\n")[0], stderr=stderr, exited=1)})
    with pytest.raises(Exit) as err:
        inventory_task(c, out=str(out), vagrantfile=str(VAGRANTFILE))
    assert err.value.code == 1
    assert "k8s-2, k8s-3" in str(err.value.message) and stderr in str(err.value.message)
    assert not out.exists()
