"""A new etcd member of a running cluster: joined as a learner before its first start, promoted after it, and
no restart of the members already there. The join itself runs on the lab: tests/lab/test_membership.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from kubefab.playbooks import facts
from kubefab.playbooks.components.etcd import JOIN_ENV, member_rows, plan
from tests.conftest import Rendered
from tests.facts_samples import DEBIAN


def with_facts(rendered: Rendered, without_data: tuple[str, ...]):
    texts = {h.name: DEBIAN.replace("hostname=k8s-1", f"hostname={h.name}") for h in rendered.cluster.hosts}
    for name in without_data:
        texts[name] = texts[name].replace("etcd_member=yes", "etcd_member=no")
    return dataclasses.replace(rendered.inputs, facts={n: facts.parse(t) for n, t in texts.items()})


def test_only_a_host_without_data_beside_members_with_data_joins(render_example: Callable[..., Rendered]) -> None:
    rendered = render_example()
    c = rendered.cluster
    joining = with_facts(rendered, ("k8s-3",))
    (step,) = plan(joining, c.host("k8s-3")).steps
    assert "member add k8s-3 --peer-urls=https://192.168.10.13:2380 --learner" in step.run
    assert "--endpoints=https://192.168.10.11:2379,https://192.168.10.12:2379 " in step.run  # not through itself
    assert f"> {JOIN_ENV}.part" in step.run and f"[ -e {JOIN_ENV} ]" in step.unless
    assert plan(joining, c.host("k8s-1")).steps == ()
    # A new cluster (no member has data) and a running one (every member has) join nobody.
    for inputs in (with_facts(rendered, ("k8s-1", "k8s-2", "k8s-3")), with_facts(rendered, ())):
        assert all(plan(inputs, h).steps == () for h in c.etcd_hosts)


def test_the_initial_cluster_restarts_nothing_and_the_join_file_is_read_after_it(
    render_example: Callable[..., Rendered],
) -> None:
    rendered = render_example()
    p = plan(rendered.inputs, rendered.cluster.host("k8s-1"))
    files = {f.path: f for f in p.files}
    initial = files["/etc/etcd/initial-cluster.conf"]
    assert initial.notifies == ()
    assert b"ETCD_INITIAL_CLUSTER=k8s-1=https://192.168.10.11:2380," in initial.content
    assert b"ETCD_INITIAL_CLUSTER" not in files["/etc/etcd/etcd.conf"].content
    unit = files["/etc/systemd/system/etcd.service"].content.decode().splitlines()
    env = [line for line in unit if line.startswith("EnvironmentFile=")]
    assert env == [
        "EnvironmentFile=/etc/etcd/etcd.conf",
        "EnvironmentFile=/etc/etcd/initial-cluster.conf",
        f"EnvironmentFile=-{JOIN_ENV}",
    ]


def test_every_member_finishes_a_promotion_an_interrupted_run_left(render_example: Callable[..., Rendered]) -> None:
    rendered = render_example()
    promote = plan(rendered.inputs, rendered.cluster.host("k8s-2")).final_steps[-1]
    assert promote.unless == f"[ ! -e {JOIN_ENV} ]"
    assert "member promote" in promote.run and f"rm -f {JOIN_ENV}" in promote.run
    assert "still a learner after 180 s: k8s-2" in promote.run
    single = render_example(lambda d: [h.update(roles=["worker"]) for h in d["hosts"][1:]])
    (member,) = single.cluster.etcd_hosts
    assert all("member promote" not in s.run for s in plan(single.inputs, member).final_steps)  # nobody to join


def test_member_rows_read_etcdctl_member_list() -> None:
    listed = (
        "8211f1d0f64f3269, started, k8s-1, https://192.168.10.11:2380, https://192.168.10.11:2379, false\n"
        "91bc3c398fb3c146, unstarted, , https://192.168.10.14:2380, , true\n"
    )
    assert member_rows(listed) == [
        ["8211f1d0f64f3269", "started", "k8s-1", "https://192.168.10.11:2380", "https://192.168.10.11:2379", "false"],
        ["91bc3c398fb3c146", "unstarted", "", "https://192.168.10.14:2380", "", "true"],
    ]
