"""The Vagrantfile read by the real programs: `ruby -c`, `vagrant validate` (Debian's vagrant, no provider running),
and the Vagrantfile evaluated by Ruby with a recording stand-in for Vagrant, so the machines it defines can be
compared with the inventory playbooks/vagrant.py writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kubefab.playbooks import vagrant

pytestmark = pytest.mark.tools
ROOT = Path(__file__).parents[2]
VAGRANTFILE = ROOT / "Vagrantfile"

# Vagrant.configure yields a recorder: every call on it (vm.define, vm.network, vb.memory=, ...) is logged with the
# machine it was made for, blocks are entered, and the log is printed as JSON.
RECORDER = r"""
require "json"
class Recorder
  def initialize(log, machine, provider) = (@log, @machine, @provider = log, machine, provider)
  def respond_to_missing?(*) = true
  def method_missing(name, *args, **kw, &block)
    @log << {"machine" => @machine, "provider" => @provider, "call" => name.to_s, "args" => args.map(&:to_s),
             "kw" => kw.to_h { |k, v| [k.to_s, v.to_s] }}
    block&.call(Recorder.new(@log, name == :define ? args[0] : @machine, name == :provider ? args[0] : @provider))
    self
  end
end
module Vagrant
  def self.configure(_version)
    log = []
    yield Recorder.new(log, nil, nil)
    puts JSON.generate(log)
  end
end
load ARGV[0]
"""


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed on this machine (.ci/run installs it)")
    return path


def vagrant_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Vagrant kept to a scratch home and dotfile directory, with no update check (no network)."""
    return {
        **os.environ,
        "VAGRANT_HOME": str(tmp / "home"),
        "VAGRANT_DOTFILE_PATH": str(tmp / "dot"),
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
        "VAGRANT_CWD": str(ROOT),
        **extra,
    }


@pytest.fixture(scope="module")
def validations(tmp_path_factory: pytest.TempPathFactory):
    """Both `vagrant validate` runs started at once (each takes seconds, mostly Ruby start-up)."""
    exe = need("vagrant")
    tmp = tmp_path_factory.mktemp("vagrant")
    runs = {
        # --ignore-provider: the machines' settings only; no provider needs to be installed or usable.
        "no provider": subprocess.Popen(
            [exe, "validate", "--ignore-provider"],
            env=vagrant_env(tmp / "a"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        # The libvirt block too: vagrant-libvirt checks its settings without libvirtd.
        "libvirt": subprocess.Popen(
            [exe, "validate"],
            env=vagrant_env(tmp / "b", VAGRANT_DEFAULT_PROVIDER="libvirt"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    }
    outputs = {name: p.communicate(timeout=120) for name, p in runs.items()}
    return {name: (runs[name].returncode, *outputs[name]) for name in runs}


def evaluate(tmp_path: Path, **env: str) -> list[dict]:
    (tmp_path / "recorder.rb").write_text(RECORDER)
    result = subprocess.run(
        [need("ruby"), str(tmp_path / "recorder.rb"), str(VAGRANTFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ruby_syntax() -> None:
    result = subprocess.run([need("ruby"), "-c", str(VAGRANTFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Syntax OK" in result.stdout, result.stderr


def test_vagrant_validate_without_a_provider(validations) -> None:
    code, out, err = validations["no provider"]
    assert code == 0, err
    assert "Vagrantfile validated successfully" in out


def test_vagrant_validate_libvirt_settings(validations) -> None:
    code, out, err = validations["libvirt"]
    if "could not be found" in err:
        pytest.skip("the vagrant-libvirt plugin is not installed (Debian package vagrant-libvirt)")
    assert code == 0, err
    assert "Vagrantfile validated successfully" in out


@pytest.mark.parametrize("env", [{}, {"KUBEFAB_IP_PREFIX": "10.44.0", "KUBEFAB_FIRST_OCTET": "51"}])
def test_machines_agree_with_the_inventory(tmp_path: Path, env: dict[str, str]) -> None:
    log = evaluate(tmp_path, **env)
    defined = [c["args"][0] for c in log if c["call"] == "define"]
    networks = [
        (c["machine"], c["kw"]["ip"]) for c in log if c["call"] == "network" and c["args"] == ["private_network"]
    ]
    hostnames = [(c["machine"], c["args"][0]) for c in log if c["call"] == "hostname="]
    expected = [(name, str(ip)) for name, ip in vagrant.machines(vagrant.settings(VAGRANTFILE.read_text(), env))]
    assert networks == expected
    assert defined == [name for name, _ in expected]
    assert hostnames == [(name, name) for name, _ in expected]


@pytest.mark.parametrize(
    ("env", "box"),
    [
        ({}, "centos/stream9"),
        ({"KUBEFAB_DISTRO": "rocky9"}, "rockylinux/9"),
        ({"KUBEFAB_DISTRO": "alma9"}, "almalinux/9"),
        ({"KUBEFAB_BOX": "generic/centos9s"}, "generic/centos9s"),
    ],
)
def test_box_choice(tmp_path: Path, env: dict[str, str], box: str) -> None:
    assert [c["args"] for c in evaluate(tmp_path, **env) if c["call"] == "box="] == [[box]]


def test_both_providers_sized_from_the_environment(tmp_path: Path) -> None:
    log = evaluate(tmp_path, KUBEFAB_CPUS="4", KUBEFAB_MEMORY="6144")
    for provider in ("virtualbox", "libvirt"):
        sizes = {c["call"]: c["args"] for c in log if c["provider"] == provider}
        assert sizes["cpus="] == ["4"] and sizes["memory="] == ["6144"], provider


def test_provisioning_is_the_operator_key_only(tmp_path: Path) -> None:
    assert not [c for c in evaluate(tmp_path) if c["call"] == "provision"], "no key file: nothing to provision"
    key = tmp_path / "ops_key"
    (tmp_path / "ops_key.pub").write_text("ssh-ed25519 AAAAC3Nza...test op@laptop\n")
    provisions = [c for c in evaluate(tmp_path, KUBEFAB_SSH_KEY=str(key)) if c["call"] == "provision"]
    assert len(provisions) == 1
    assert provisions[0]["args"] == ["shell"]
    assert provisions[0]["kw"]["args"] == '["ssh-ed25519 AAAAC3Nza...test op@laptop"]'
    assert "authorized_keys" in provisions[0]["kw"]["inline"]
    assert not any(word in provisions[0]["kw"]["inline"] for word in ("kube", "yum", "dnf", "swapoff"))
