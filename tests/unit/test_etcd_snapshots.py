"""etcd.snapshots: the timer each etcd member gets when the inventory asks for it, its retirement when the
inventory stops asking, and the schedule's validation.

The timer itself runs on the lab: tests/lab/test_kubernetes_etcd_snapshots.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kubefab.playbooks import reset
from kubefab.playbooks.components.etcd import RETIRE_SNAPSHOTS, SNAPSHOT_DIR, SNAPSHOT_SCRIPT, SNAPSHOT_TIMER
from kubefab.playbooks.escape import UnsafeValue, unit_setting
from tests.conftest import Rendered
from tests.unit.test_inventory import only

TIMER = "/etc/systemd/system/kubefab-etcd-snapshot.timer"
SERVICE = "/etc/systemd/system/kubefab-etcd-snapshot.service"


def snapshots(rendered: Rendered, host: str) -> list:
    return [p for p in rendered.plans[host] if p.component == "etcd-snapshots"]


def test_unset_every_member_only_retires_a_timer_left_from_before(render_example: Callable[..., Rendered]) -> None:
    rendered = render_example()
    for h in rendered.cluster.hosts:
        plans = snapshots(rendered, h.name)
        if h in rendered.cluster.etcd_hosts:
            (plan,) = plans
            assert plan.steps == (RETIRE_SNAPSHOTS,) and not (plan.files or plan.services or plan.directories)
        else:
            assert plans == []
    assert "systemctl disable --now kubefab-etcd-snapshot.timer" in RETIRE_SNAPSHOTS.run
    assert SNAPSHOT_DIR not in RETIRE_SNAPSHOTS.run.split()  # the snapshots taken stay


def test_set_every_member_gets_the_script_the_units_and_a_running_timer(
    render_example: Callable[..., Rendered],
) -> None:
    rendered = render_example(lambda d: d.update(etcd={"snapshots": {"schedule": "Mon..Fri *-*-* 03:30", "keep": 5}}))
    assert rendered.cluster.etcd_hosts
    for h in rendered.cluster.etcd_hosts:
        (plan,) = snapshots(rendered, h.name)
        files = {f.path: f for f in plan.files}
        assert {f.path: f.mode for f in plan.files} == {SNAPSHOT_SCRIPT: 0o700, TIMER: 0o600, SERVICE: 0o600}
        assert "OnCalendar=Mon..Fri *-*-* 03:30\n" in files[TIMER].content.decode()
        assert files[TIMER].notifies == (SNAPSHOT_TIMER,) and plan.services == (SNAPSHOT_TIMER,)
        script = files[SNAPSHOT_SCRIPT].content.decode()
        assert f"--endpoints=https://{h.address}:2379" in script and "head -n -5" in script
        assert "etcdutl snapshot status" in script
        assert [d.path for d in plan.directories] == [SNAPSHOT_DIR] and plan.directories[0].mode == 0o700
        assert not plan.steps and [c.name for c in plan.checks] == ["etcd snapshot timer active"]


def test_reset_keeps_the_snapshots_unless_data_goes_too(render_example: Callable[..., Rendered]) -> None:
    rendered = render_example(lambda d: d.update(etcd={"snapshots": {}}))
    host = rendered.cluster.etcd_hosts[0]
    kept = reset.steps(rendered.inputs, host, delete_data=False)
    assert not any(SNAPSHOT_DIR in s.run.split() for s in kept)
    assert any(SNAPSHOT_SCRIPT in s.run for s in kept)  # kubefab's own files go
    gone = {s.name: s for s in reset.steps(rendered.inputs, host, delete_data=True)}
    assert SNAPSHOT_DIR in gone["etcd data removed"].run


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("daily\nExecStart=/bin/sh", "daily"),
        ("*-*-* %H:00", "%H"),
        ("", ""),
    ],
)
def test_a_schedule_that_is_not_a_calendar_expression_is_refused(value: str, found: str) -> None:
    p = only(lambda d: d.update(etcd={"snapshots": {"schedule": value}}), "etcd.snapshots.schedule", found)
    assert "OnCalendar" in p.expected


def test_keep_is_bounded_and_unknown_keys_are_refused() -> None:
    only(lambda d: d.update(etcd={"snapshots": {"keep": 0}}), "etcd.snapshots.keep", "0")
    only(lambda d: d.update(etcd={"snapshot": {}}), "etcd.snapshot")


def test_a_unit_setting_refuses_what_systemd_reads_differently() -> None:
    assert unit_setting("*-*-* 00,12:00:00") == "*-*-* 00,12:00:00"
    for bad in ("a%b", "a\\b", 'a"b', "a\nb"):
        with pytest.raises(UnsafeValue):
            unit_setting(bad)
