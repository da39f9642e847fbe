"""`kubefab node.remove`: what refuses a removal, the inventory's text without the host, and the order of the
steps on the hosts (through a scripted runner: a test double standing in for the hosts; the removal itself runs
on the lab in tests/lab/test_membership.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import yaml

from kubefab.playbooks.components.load_balancer import vip_release
from kubefab.playbooks.remote import Output, StepFailed
from kubefab.playbooks.removal import RemovalError, Remover, inventory_without, quorum_refusal, refusals
from tests.conftest import Rendered
from tests.unit.scripted import ScriptedRunner

TEXT = """\
# the lab
name: lab
hosts:
  # the first host
  - name: a
    ip: 10.0.0.1
    roles: [etcd, control_plane]
  -
    name: b   # written the other way
    ip: 10.0.0.2
    roles:
      - etcd
      - worker
  - {name: c, ip: 10.0.0.3, roles: [etcd]}
# after the hosts
etcd:
  allow_even_members: true
"""


@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_the_inventory_loses_only_the_host_and_keeps_every_comment_of_the_others(name: str) -> None:
    edited = inventory_without(TEXT, name)
    data = yaml.safe_load(edited)
    assert [h["name"] for h in data["hosts"]] == [n for n in "abc" if n != name]
    assert data["etcd"] == {"allow_even_members": True} and data["name"] == "lab"
    for comment in ("# the lab", "# after the hosts"):
        assert comment in edited
    assert ("# written the other way" in edited) == (name != "b")


def test_a_flow_list_of_hosts_or_an_unknown_name_is_left_to_the_operator() -> None:
    with pytest.raises(RemovalError, match="flow list"):
        inventory_without("hosts: [{name: a, ip: 10.0.0.1, roles: [etcd]}]\n", "a")
    with pytest.raises(RemovalError, match="no host named z"):
        inventory_without(TEXT, "z")


def inventory_text(rendered: Rendered) -> str:
    return rendered.cluster.source.read_text()


def test_a_removal_that_leaves_no_member_no_control_plane_or_no_vip_holder_is_refused(
    render_example: Callable[..., Rendered],
) -> None:
    def alone(data: dict) -> None:
        data["hosts"] = [
            {"name": "k8s-1", "ip": "192.168.10.11", "roles": ["etcd", "control_plane", "lb"]},
            {"name": "k8s-2", "ip": "192.168.10.12", "roles": ["worker", "lb"]},
        ]

    rendered = render_example(alone)
    text = inventory_text(rendered)
    why = refusals(rendered.cluster, "k8s-1", inventory_without(text, "k8s-1"))
    assert any("the only etcd member" in w for w in why) and any("the only control-plane host" in w for w in why)
    assert refusals(rendered.cluster, "k8s-2", inventory_without(text, "k8s-2")) == []  # one lb host is left

    def one_lb(data: dict) -> None:
        for h in data["hosts"][1:]:
            h["roles"] = [r for r in h["roles"] if r != "lb"]

    rendered = render_example(one_lb)
    why = refusals(rendered.cluster, "k8s-1", inventory_without(inventory_text(rendered), "k8s-1"))
    assert any("the only lb host" in w for w in why), why


def test_an_even_member_count_left_is_refused_with_the_inventory_rule(render_example: Callable[..., Rendered]) -> None:
    rendered = render_example()
    text = inventory_text(rendered)
    (why,) = refusals(rendered.cluster, "k8s-3", inventory_without(text, "k8s-3"))
    assert "the inventory without k8s-3" in why and "2 host(s) with role etcd" in why and "allow_even_members" in why


def test_a_member_is_removed_only_when_the_members_left_keep_a_quorum() -> None:
    assert quorum_refusal(3, 3) is None and quorum_refusal(3, 2) is None
    assert "only 1 of the 3 etcd members left would be healthy, and 2 make a quorum" in (quorum_refusal(3, 1) or "")
    assert quorum_refusal(2, 1) is not None and quorum_refusal(1, 1) is None


def test_the_steps_go_drain_vip_apiserver_then_leadership_and_member_and_the_node_last(
    render_example: Callable[..., Rendered],
) -> None:
    c = render_example().cluster
    members = {
        "members": [
            {"ID": 10, "name": "k8s-1", "peerURLs": ["https://192.168.10.11:2380"]},
            {"ID": 20, "name": "k8s-2", "peerURLs": ["https://192.168.10.12:2380"]},
            {"ID": 30, "name": "k8s-3", "peerURLs": ["https://192.168.10.13:2380"]},
        ]
    }
    r = ScriptedRunner(
        c,
        {
            "get node k8s-1": json.dumps({"metadata": {"name": "k8s-1"}}),
            "member list -w json": json.dumps(members),
            "endpoint status -w json": json.dumps([{"Status": {"leader": 10}}]),
            "ip -o -4 addr show": f"2: eth0 inet {c.api.vip}/24 scope global eth0",
            "member list": "",
        },
    )
    gone = c.host("k8s-1")
    rm = Remover(r, gone, log=lambda *_: None)  # type: ignore[arg-type]
    for title, step in rm.steps():
        if title != "clean":  # the reset's own steps: tests/unit/test_reset_steps.py
            step()
    order = [
        next(i for i, (host, cmd) in enumerate(r.ran) if host == where and needle in cmd)
        for where, needle in [
            ("k8s-2", "drain k8s-1 --ignore-daemonsets"),
            ("k8s-1", "disable --now -q keepalived"),
            ("k8s-2", "set server kube-apiserver/k8s-1 state drain"),
            ("k8s-1", "disable --now -q kube-apiserver"),
            ("k8s-1", "move-leader 14"),  # 20, in hex: a voter that is not k8s-1
            ("k8s-2", "member remove a"),  # 10, in hex, through the members left
            ("k8s-1", "disable --now -q etcd"),
            ("k8s-2", "delete node k8s-1"),
        ]
    ]
    assert order == sorted(order), r.ran
    # kubectl runs where the apiserver stays, never on the host leaving.
    assert all(host != "k8s-1" for host, cmd in r.ran if "kubectl" in cmd)


@dataclass
class UnreachableRunner(ScriptedRunner):
    """As ScriptedRunner, with the host `down` not answering over SSH."""

    down: str = ""

    def run(self, host, step: str, command: str, check: bool = True, timeout: int | None = None) -> Output:
        if host.name == self.down:
            self.ran.append((host.name, command))
            raise StepFailed(host.name, step, command, "cannot reach the host over SSH: timed out")
        return super().run(host, step, command, check, timeout)


def test_an_unreachable_host_is_still_taken_out_of_etcd_haproxy_and_the_api(
    render_example: Callable[..., Rendered],
) -> None:
    c = render_example().cluster
    members = {"members": [{"ID": 10, "name": "k8s-3", "peerURLs": ["https://192.168.10.13:2380"]}]}
    r = UnreachableRunner(
        c,
        {"get node k8s-3": json.dumps({"metadata": {"name": "k8s-3"}}), "member list -w json": json.dumps(members)},
        down="k8s-3",
    )
    rm = Remover(r, c.host("k8s-3"), log=lambda *_: None)  # type: ignore[arg-type]
    assert rm.reach() is False
    for _, step in rm.steps():
        step()
    assert [cmd for host, cmd in r.ran if host == "k8s-3"] == ["true"]  # only the attempt to reach it
    done = " ".join(cmd for _, cmd in r.ran)
    assert "member remove a" in done and "delete node k8s-3" in done and "state drain" in done
    assert "drain k8s-3 --ignore-daemonsets" not in done  # a kubelet that is gone cannot confirm evictions


def test_the_vip_is_given_up_after_new_connections_are_held_back_and_the_rule_goes_however_it_ends(
    render_example: Callable[..., Rendered],
) -> None:
    c = render_example().cluster
    command = vip_release(c)
    rule = f"INPUT -d {c.api.vip} -p tcp --dport {c.api.port} --syn"
    held, kept, stopped = (command.index(x) for x in (f"iptables -I {rule}", "sleep", "disable --now -q keepalived"))
    assert held < kept < stopped
    assert f"trap 'iptables -D {rule}" in command and "EXIT" in command and "HUP INT TERM" in command
