"""The runner's decisions against FakeHost, a test double of an SSH-reached host (named so: it stands in for
`playbooks.remote.Remote`; the lab tests run the same runner against real hosts). FakeHost keeps files,
services and the pending-restart record in memory and answers the commands apply and the runner send.

Covered: start vs restart vs nothing, restarts owed by an earlier run, rolling order with each host's checks
between restarts, a failing check stopping the roll and leaving the rest owed, the exactly-one check, a
load-balanced service drained around its restart, a reloading one reloaded, and plan
(`Runner.preview`) agreeing with deploy (`Runner.phase`) over the same host states."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shlex
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from kubefab.playbooks.apply import PENDING_RESTARTS
from kubefab.playbooks.component import Component
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Check, File, Plan, Step
from kubefab.playbooks.remote import Output, StepFailed
from kubefab.playbooks.runner import Actions, DeployFailed, Runner, decide

OK, FAIL = Output("", "", 0), Output("", "failed", 1)


class FakeHost:
    """In-memory host: files (path -> mode, owner, group, content), services (name -> is-enabled, is-active),
    the pending-restart record, and commands that fail (by substring)."""

    def __init__(self, name: str, events: list[tuple[str, str]], lock: threading.Lock) -> None:
        self.name = name
        self.files: dict[str, tuple[int, str, str, bytes]] = {}
        self.services: dict[str, tuple[str, str]] = {}
        self.pending: set[str] = set()
        self.failing: set[str] = set()
        self.uploads: dict[str, bytes] = {}
        self.events, self.lock = events, lock

    def note(self, what: str) -> None:
        with self.lock:
            self.events.append((self.name, what))

    # -- the Remote interface ------------------------------------------------------------------------------

    def run(
        self, step: str, command: str, check: bool = True, timeout: int | None = None, as_root: bool = True
    ) -> Output:
        out = self.answer(step, command)
        if check and not out.ok:
            raise StepFailed(self.name, step, command, out.stderr)
        return out

    def upload(self, step: str, content: bytes | None, remote: str, local_path: str | None = None) -> None:
        self.uploads[remote] = content or b""

    def close(self) -> None:
        pass

    # -- what it understands -------------------------------------------------------------------------------

    def answer(self, step: str, command: str) -> Output:
        if step.endswith("read host state"):
            return Output(self.state(command), "", 0)
        if command == "mktemp -d":
            return Output("/tmp/up\n", "", 0)
        if command.startswith("install -D"):
            for mode, owner, group, sent, path in re.findall(
                r"install -D -m (\d+) -o (\S+) -g (\S+) (\S+) \S+ && mv -f \S+ (\S+)", command
            ):
                self.files[shlex.split(path)[0]] = (
                    int(mode, 8),
                    shlex.split(owner)[0],
                    shlex.split(group)[0],
                    self.uploads[sent],
                )
                self.note(f"install {shlex.split(path)[0]}")
            return OK
        if command.startswith("systemctl ") and "is-active" not in command:
            return self.systemctl(command)
        if PENDING_RESTARTS in command:
            names = command.split("printf '%s\\n' ", 1)[1].split(" > ")[0].split() if "printf" in command else []
            self.pending = set(names)
            return OK
        if any(f in command for f in self.failing):
            self.note(f"fail {step}")
            return FAIL
        self.note(f"ok {step}")
        return OK

    def systemctl(self, command: str) -> Output:
        for part in command.split(" && "):
            words = part.split()
            verb, names = words[1], [w for w in words[2:] if not w.startswith("-")]
            if verb == "daemon-reload":
                continue
            if any(f in part for f in self.failing):
                return FAIL
            for s in names:
                enabled, active = self.services.get(s, ("disabled", "inactive"))
                if verb == "enable":
                    self.services[s] = ("enabled", active)
                elif verb in ("start", "restart"):
                    self.services[s] = (enabled, "active")
                self.note(f"{verb} {s}")
        return OK

    def state(self, script: str) -> str:
        """The output of apply's state script for this host (one line per item, as the script prints)."""
        lines = []
        for line in script.splitlines():
            if m := re.match(r"p=(.+?); if \[ -f", line):
                path = shlex.split(m.group(1))[0]
                if path in self.files:
                    mode, owner, group, content = self.files[path]
                    lines.append(f"F\t{path}\t{mode:o}:{owner}:{group}\t{hashlib.sha256(content).hexdigest()}")
                else:
                    lines.append(f"F\t{path}\t-\t-")
            elif m := re.match(r"if \( (.*) \) >/dev/null 2>&1; then printf 'S\\t(\d+)", line):
                ok = not any(f in m.group(1) for f in self.failing)
                lines.append(f"S\t{m.group(2)}\t{'ok' if ok else 'run'}")
            elif m := re.match(r"printf 'V\\t%s\\t%s\\t%s\\n' (\S+)", line):
                name = shlex.split(m.group(1))[0]
                enabled, active = self.services.get(name, ("", "inactive"))
                lines.append(f"V\t{name}\t{enabled}\t{active}")
            elif line.startswith("printf 'R"):
                lines.append(f"R\t{' '.join(sorted(self.pending))}")
        return "\n".join(lines) + "\n"


def file_plan(service: str, body: bytes = b"v1\n", step: Step | None = None) -> Callable[[Inputs, Host], Plan]:
    def plan(inputs: Inputs, host: Host) -> Plan:
        return Plan(
            host.name,
            service,
            files=(File(f"/etc/{service}.conf", body, notifies=(service,)),),
            steps=(step,) if step else (),
        )

    return plan


def ready(service: str) -> Callable[[Cluster, Host], tuple[Check, ...]]:
    return lambda c, host: (Check(f"{service} ready on {host.name}", f"check-{service}-{host.name}", 0.05, 0.01),)


def daemon(name: str, restart: str = "together", body: bytes = b"v1\n", step: Step | None = None) -> Component:
    """A stand-in component declared like the real ones: one file, one service, one readiness check."""
    return Component(
        name,
        phase="test",
        hosts=lambda c: c.hosts,
        plan=file_plan(name, body, step),
        services=(name,),
        restart=restart,
        checks=ready(name),
    )  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def inputs(example_inputs: Inputs) -> Inputs:
    return example_inputs


class Fleet:
    """One FakeHost per inventory host, with one timeline of what happened where."""

    def __init__(self, cluster: Cluster) -> None:
        self.events: list[tuple[str, str]] = []
        lock = threading.Lock()
        self.hosts = {h.name: FakeHost(h.name, self.events, lock) for h in cluster.hosts}
        self.connected: list[str] = []

    def runner(self, inputs: Inputs, limit: list[Host] | None = None) -> Runner:
        def connect(host: Host) -> FakeHost:
            self.connected.append(host.name)
            return self.hosts[host.name]

        return Runner(inputs.cluster, inputs, connect, lambda host, text: None, limit=limit)  # type: ignore[arg-type]

    def done(self, verb: str) -> list[str]:
        return [host for host, what in self.events if what.startswith(f"{verb} ")]

    def installed(self, comps: list[Component], inputs: Inputs, running: bool = True) -> None:
        """Every host already has the components' files, their services enabled and running."""
        for name, fake in self.hosts.items():
            for comp in comps:
                plan = comp.host_plan(inputs, inputs.cluster.host(name))
                assert plan is not None
                for f in plan.files:
                    fake.files[f.path] = (f.mode, f.owner, f.group, f.content)
                for s in plan.services:
                    fake.services[s] = ("enabled", "active" if running else "inactive")


def test_decide_starts_what_does_not_run_and_restarts_only_what_is_owed() -> None:
    state = {
        "a": ("enabled", "active"),
        "b": ("enabled", "activating"),
        "c": ("enabled", "failed"),
        "d": ("disabled", "active"),
        "e": ("", ""),
    }
    assert decide("abcde", state, owed={"a", "b", "c"}) == Actions(
        enable=("d", "e"), start=("c", "e"), restart=("a", "b")
    )
    assert decide("ab", state, owed=set()) == Actions()


def test_first_run_starts_every_service_and_a_second_changes_nothing(inputs: Inputs) -> None:
    fleet, comp = Fleet(inputs.cluster), daemon("alpha")
    first = fleet.runner(inputs).phase("test", (comp,))
    assert sorted(fleet.done("start")) == sorted(fleet.hosts) and not fleet.done("restart")
    assert all(t.changed == ["file /etc/alpha.conf"] for t in first.hosts.values())
    fleet.events.clear()
    again = fleet.runner(inputs).phase("test", (comp,))
    assert again.changes() == 0 and not fleet.done("start") and not fleet.done("restart")


def test_a_changed_file_restarts_its_service_rolling_with_checks_between_hosts(inputs: Inputs) -> None:
    fleet = Fleet(inputs.cluster)
    fleet.installed([daemon("alpha", "rolling")], inputs)
    fleet.runner(inputs).phase("test", (daemon("alpha", "rolling", b"v2\n"),))
    timeline = [(h, w) for h, w in fleet.events if w.startswith(("restart", "ok alpha ready"))]
    hosts = list(fleet.hosts)
    rolled = [(h, w) for h in hosts for w in ("restart alpha", f"ok alpha ready on {h}")]
    assert timeline[: len(rolled)] == rolled
    # then the phase's own checks, on every host at once
    assert sorted(timeline[len(rolled) :]) == [(h, f"ok alpha ready on {h}") for h in sorted(hosts)]


def test_a_failing_check_stops_the_roll_and_the_rest_stays_owed(inputs: Inputs) -> None:
    fleet = Fleet(inputs.cluster)
    fleet.installed([daemon("alpha", "rolling")], inputs)
    first, second, third = fleet.hosts
    fleet.hosts[first].failing.add(f"check-alpha-{first}")
    runner = fleet.runner(inputs)
    with pytest.raises(DeployFailed) as failed:
        runner.phase("test", (daemon("alpha", "rolling", b"v2\n"),))
    runner.close()
    assert failed.value.errors[0].host == first and "alpha ready" in failed.value.errors[0].step
    assert fleet.done("restart") == [first], "no host after the failed one is restarted"
    # The new files are on every host; the hosts not restarted keep the restart they are owed for the next run.
    assert all(f.files["/etc/alpha.conf"][3] == b"v2\n" for f in fleet.hosts.values())
    assert fleet.hosts[second].pending == {"alpha"} and fleet.hosts[third].pending == {"alpha"}
    assert fleet.hosts[first].pending == set()


def test_an_owed_restart_is_done_by_the_next_run_and_cleared(inputs: Inputs) -> None:
    fleet = Fleet(inputs.cluster)
    fleet.installed([daemon("alpha")], inputs)
    name = next(iter(fleet.hosts))
    fleet.hosts[name].pending = {"alpha"}
    runner = fleet.runner(inputs)
    result = runner.phase("test", (daemon("alpha"),))
    runner.close()
    assert fleet.done("restart") == [name] and result.hosts[name].restarted == ["alpha"]
    assert fleet.hosts[name].pending == set()


def test_a_restart_owed_to_a_later_phase_survives_a_run_that_stops_before_it(inputs: Inputs) -> None:
    """A file of phase `test` read by a service of phase `later` (a certificate and its apiserver)."""
    fleet = Fleet(inputs.cluster)
    later = Component("beta", phase="later", hosts=lambda c: c.hosts, services=("beta",))
    fleet.installed([later], inputs)
    writer = Component(
        "cert",
        phase="test",
        hosts=lambda c: c.hosts,
        plan=lambda i, h: Plan(h.name, "cert", files=(File("/etc/cert.pem", b"new", notifies=("beta",)),)),
    )
    runner = fleet.runner(inputs)
    runner.phase("test", (writer,))
    runner.close()  # the run stops here (--only test, or a failure)
    assert all(f.pending == {"beta"} for f in fleet.hosts.values())
    runner = fleet.runner(inputs)
    runner.phase("later", (later,))
    runner.close()
    assert sorted(fleet.done("restart")) == sorted(fleet.hosts)
    assert all(f.pending == set() for f in fleet.hosts.values())


def test_a_step_restarts_what_it_notifies_and_must_take_effect(inputs: Inputs) -> None:
    fleet = Fleet(inputs.cluster)
    fleet.installed([daemon("alpha")], inputs)
    step = Step("tune", unless="tuned-already", run="tune-it", notifies=("alpha",))
    for f in fleet.hosts.values():
        f.failing.add("tuned-already")
    with pytest.raises(DeployFailed, match="its check still fails after it ran"):
        fleet.runner(inputs).phase("test", (daemon("alpha", step=step),))
    for f in fleet.hosts.values():
        f.failing.clear()
    name = next(iter(fleet.hosts))
    fleet.hosts[name].failing.add("tuned-already")

    def tune(step_name: str, command: str, original=fleet.hosts[name].answer) -> Output:
        if command == "tune-it":
            fleet.hosts[name].failing.discard("tuned-already")
        return original(step_name, command)

    fleet.hosts[name].answer = tune  # type: ignore[method-assign]
    fleet.events.clear()
    fleet.runner(inputs).phase("test", (daemon("alpha", step=step),))
    assert fleet.done("restart") == [name]


def test_exactly_one_check_fails_when_two_hosts_pass(inputs: Inputs) -> None:
    fleet = Fleet(inputs.cluster)
    vip = Check("holds the VIP", "holds-vip", 0.05, 0.01, scope="exactly-one")
    comp = Component("vrrp", phase="test", hosts=lambda c: c.hosts, checks=lambda c, h: (vip,))
    with pytest.raises(DeployFailed, match="passed on: "):
        fleet.runner(inputs).phase("test", (comp,))
    for name in list(fleet.hosts)[1:]:
        fleet.hosts[name].failing.add("holds-vip")
    fleet.runner(inputs).phase("test", (comp,))  # one holder: passes


def test_a_limited_run_reaches_only_its_hosts_and_leaves_the_exactly_one_check(inputs: Inputs) -> None:
    fleet, second = Fleet(inputs.cluster), inputs.cluster.hosts[1]
    vip = Check("holds the VIP", "holds-vip", 0.05, 0.01, scope="exactly-one")
    comp = dataclasses.replace(daemon("alpha"), checks=lambda c, h: (*ready("alpha")(c, h), vip))
    fleet.hosts[second.name].failing.add("holds-vip")  # the VIP is held outside the limit
    result = fleet.runner(inputs, limit=[second]).phase("test", (comp,))
    assert set(fleet.connected) == {second.name}
    assert fleet.done("start") == [second.name] and list(result.hosts) == [second.name]
    with pytest.raises(DeployFailed, match="passed on: no host"):  # the same check, unlimited, is made
        fleet.runner(inputs, limit=[second]).exactly_one("test", vip, [second])


@pytest.mark.parametrize("state", ["activating", "failed", "stopped", "owed", "changed", "disabled", "clean"])
def test_plan_and_deploy_agree(inputs: Inputs, state: str) -> None:
    """The same host states, previewed by plan and then deployed: plan's starts and restarts are deploy's."""

    def fleet_in(state: str) -> Fleet:
        fleet = Fleet(inputs.cluster)
        fleet.installed([daemon("alpha"), daemon("beta")], inputs)
        fake = fleet.hosts[next(iter(fleet.hosts))]
        if state in ("activating", "failed"):
            fake.services["alpha"] = ("enabled", state)
        elif state == "stopped":
            fake.services["alpha"] = ("enabled", "inactive")
        elif state == "disabled":
            fake.services["alpha"] = ("disabled", "active")
        elif state == "owed":
            fake.pending = {"beta"}
        elif state == "changed":
            fake.files["/etc/beta.conf"] = (0o644, "root", "root", b"old\n")
        return fleet

    comps = (daemon("alpha"), daemon("beta"))
    fleet = fleet_in(state)
    preview = fleet.runner(inputs).preview("test", comps)
    planned = {(h, "start", s) for h, p in preview.items() for s in p.actions.start}
    planned |= {(h, "restart", s) for h, p in preview.items() for s in p.actions.restart}
    planned |= {(h, "enable", s) for h, p in preview.items() for s in p.actions.enable}
    assert all(not f.uploads for f in fleet.hosts.values()), "plan changed nothing"
    fleet = fleet_in(state)
    fleet.runner(inputs).phase("test", comps)
    done = {
        (h, *what.split(" ", 1)) for h, what in fleet.events if what.split(" ", 1)[0] in ("start", "restart", "enable")
    }
    assert planned == done
    expected = {"activating": 0, "failed": 1, "stopped": 1, "owed": 1, "changed": 1, "disabled": 1, "clean": 0}
    assert len(done) == expected[state], done


def test_real_declarations_run_through_the_runner(inputs: Inputs, tmp_path: Path) -> None:
    """The lb phase's own components (no binaries) against fake hosts: files installed, both services started,
    the VIP check passing with one holder and the check through the VIP on the first lb host."""
    fleet = Fleet(inputs.cluster)
    lb = [h.name for h in inputs.cluster.lb_hosts]
    for name in lb[1:]:
        fleet.hosts[name].failing.add("ip -o -4 addr show")
    result = fleet.runner(inputs).phase("lb")
    assert sorted(result.hosts) == sorted(lb)
    assert all(sorted(t.started) == ["haproxy", "keepalived"] for t in result.hosts.values())
    api = inputs.cluster.api
    assert (lb[0], f"ok lb check: HAProxy accepts on {api.vip}:{api.port}") in fleet.events


def test_a_rotated_service_is_drained_before_its_restart_and_back_after_its_check(inputs: Inputs) -> None:
    """As kube-apiserver behind HAProxy: out of every balancer's rotation before its host restarts it, back in
    once that host's check passes, host after host."""
    balancers = inputs.cluster.hosts[:2]

    def rotation(c: Cluster, host: Host, state: str) -> tuple[tuple[Host, str], ...]:
        return tuple((lb, f"set {host.name} {state}") for lb in balancers)

    def rotated(body: bytes) -> Component:
        return dataclasses.replace(daemon("alpha", "rolling", body), rotation=rotation)

    fleet = Fleet(inputs.cluster)
    fleet.installed([rotated(b"v1\n")], inputs)
    fleet.runner(inputs).phase("test", (rotated(b"v2\n"),))
    first = next(iter(fleet.hosts))
    mine = [w for h, w in fleet.events if first in w or (h == first and w.startswith("restart"))]
    drained = [w for w in mine if w.endswith(f"{first} drain in rotation")]
    back = [w for w in mine if w.endswith(f"{first} ready in rotation")]
    assert len(drained) == len(balancers) and len(back) >= len(balancers), mine
    order = [w.split(": ", 1)[-1] for w in mine]
    assert order.index(f"{first} drain in rotation") < order.index("restart alpha")
    assert (
        order.index("restart alpha")
        < order.index(f"ok alpha ready on {first}")
        < order.index(f"{first} ready in rotation")
    )


def test_a_reloading_service_is_reloaded_not_restarted(inputs: Inputs) -> None:
    fleet = Fleet(inputs.cluster)
    fleet.installed([daemon("alpha")], inputs)
    comp = dataclasses.replace(daemon("alpha", body=b"v2\n"), reload=True)
    result = fleet.runner(inputs).phase("test", (comp,))
    assert sorted(fleet.done("reload-or-restart")) == sorted(fleet.hosts) and not fleet.done("restart")
    assert all(t.restarted == ["alpha"] for t in result.hosts.values())
