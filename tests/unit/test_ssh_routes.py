"""Where SSH connects and through what, and an API behind an external load balancer: what kubefab renders for
them (tests/lab/test_deploy.py shows a bastion in use)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kubefab.playbooks.verify import ssh_config


def _bastion(d: dict) -> None:
    d["ssh"] = {"user": "ops", "key": "keys/ops", "bastion": {"host": "jump.example.internal", "port": 2200}}
    d["hosts"][1]["ssh"] = {"host": "k8s-2.internal"}


def test_ssh_config_names_hosts_and_jumps_through_one_bastion_block(render_example: Callable, tmp_path: Path) -> None:
    cluster = render_example(_bastion).cluster
    text = ssh_config(cluster, tmp_path)
    blocks = {b.splitlines()[0]: b.splitlines()[1:] for b in text.strip().split("\n\n")}
    assert list(blocks) == ["Host k8s-1", "Host k8s-2", "Host k8s-3", "Host kubefab-bastion-1"]
    assert "  HostName 192.168.10.11" in blocks["Host k8s-1"]
    assert "  HostName k8s-2.internal" in blocks["Host k8s-2"]
    for name in ("Host k8s-1", "Host k8s-2", "Host k8s-3"):
        assert "  ProxyJump kubefab-bastion-1" in blocks[name] and "  User ops" in blocks[name]
    jump = blocks["Host kubefab-bastion-1"]
    assert "  HostName jump.example.internal" in jump and "  Port 2200" in jump and "  User ops" in jump
    assert f"  IdentityFile {cluster.path('keys/ops')}" in jump


def test_without_a_bastion_no_jump(render_example: Callable, tmp_path: Path) -> None:
    text = ssh_config(render_example().cluster, tmp_path)
    assert "ProxyJump" not in text and "kubefab-bastion" not in text


def test_external_load_balancer_renders_no_haproxy_or_keepalived(render_example: Callable) -> None:
    def external(d: dict) -> None:
        for h in d["hosts"]:
            h["roles"] = [r for r in h["roles"] if r != "lb"]
        d["api"].update(external=True, vip="203.0.113.10", port=443)

    rendered = render_example(external)
    plain = render_example()
    for host in rendered.cluster.hosts:
        paths = set(rendered.files(host.name))
        assert not [p for p in paths if "haproxy" in p or "keepalived" in p], sorted(paths)
    assert [p for p in plain.files("k8s-1") if "haproxy" in p]  # the same check finds them on a built-in lb
    kubeconfig = next(p for p in rendered.files("k8s-3") if p == "/etc/kubernetes/kubelet.conf")
    assert 'server: "https://203.0.113.10:443"' in rendered.text("k8s-3", kubeconfig)
