"""The runner: components over hosts. A phase applies its components' plans on every host in parallel, starts
what does not run, restarts what a change (or an earlier run) owes a restart, runs the plans' final steps and
waits on their checks. `deploy` and `plan` go through the same reading of the hosts and the same decision
(`decide`), so what plan shows is what deploy does.

A step that fails on one host stops the phase: the other hosts finish the stage they are in, nothing later
runs, and the error names the host, the step, the command and the tail of stderr. Components that restart
rolling are restarted one host at a time, each host's checks passing before the next; a service behind a load
balancer (a component's `rotation`: kube-apiserver behind HAProxy) is drained there before it starts or
restarts and put back once its host's checks pass. Hosts are reached through the injected
`connect(host) -> Remote`, so all of this runs against a fake remote in unit tests."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from kubefab.playbooks import bundle as bundles
from kubefab.playbooks import components, identity, upgrade
from kubefab.playbooks.apply import PENDING_RESTARTS, Assessment, Outcome, assess, execute
from kubefab.playbooks.component import Component
from kubefab.playbooks.components.addons import AddonError
from kubefab.playbooks.facts import COMMAND, Facts, parse
from kubefab.playbooks.findings import Finding
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.model import Cluster, Host
from kubefab.playbooks.plan import Binary, Check, Plan, Step
from kubefab.playbooks.prefetch import Prefetch
from kubefab.playbooks.preflight import check
from kubefab.playbooks.remote import Remote, StepFailed

PHASES = ("preflight", *components.PHASES)
RUNNING = ("active", "activating", "reloading")  # started already: a start would only wait for it
T = TypeVar("T")


class DeployFailed(Exception):
    def __init__(self, phase: str, errors: list[StepFailed], done: dict | None = None) -> None:
        self.phase, self.errors = phase, errors
        self.done = done or {}  # what the hosts that did not fail returned
        super().__init__(f"phase {phase} failed; later phases did not run\n" + "\n".join(str(e) for e in errors))


class Stopped(Exception):
    """Another host failed: this one stops before its next stage."""


@dataclass(frozen=True)
class Actions:
    """What the services of one host's plan need: enabling (at boot), starting, restarting."""

    enable: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.enable or self.start or self.restart)


def decide(services: Iterable[str], state: Mapping[str, tuple[str, str]], owed: set[str]) -> Actions:
    """The one decision for deploy and plan. `state`: service -> (is-enabled, is-active) as read from the host;
    `owed`: services a changed file, binary or step notified, now or in an earlier run that stopped early. A
    service that is not running is started (which reads its new files anyway); a running one is restarted
    only when owed."""
    enable, start, restart = [], [], []
    for s in services:
        enabled, active = state.get(s, ("", ""))
        if enabled != "enabled":
            enable.append(s)
        if active not in RUNNING:
            start.append(s)
        elif s in owed:
            restart.append(s)
    return Actions(tuple(enable), tuple(start), tuple(restart))


def notified(found: Assessment) -> set[str]:
    """The services the changes `found` would notify when carried out (what plan predicts)."""
    return (
        {s for f in found.files + found.perms for s in f.notifies}
        | {s for b in found.binaries for s in b.notifies}
        | {s for st in found.steps for s in st.notifies}
    )


@dataclass
class Tally:
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    failed: str = ""


@dataclass
class PhaseResult:
    name: str
    seconds: float = 0.0
    hosts: dict[str, Tally] = field(default_factory=dict)
    note: str = ""

    def changes(self) -> int:
        return sum(len(t.changed) + len(t.started) + len(t.restarted) for t in self.hosts.values())


@dataclass(frozen=True)
class Preview:
    """What a phase would do on one host: the plan, what differs, the service actions and the final steps
    that would run."""

    plan: Plan
    found: Assessment
    actions: Actions
    final_steps: tuple[Step, ...]


class Runner:
    def __init__(
        self,
        cluster: Cluster,
        inputs: Inputs,
        connect: Callable[[Host], Remote],
        report: Callable[[str, str], None],
        timeout: int = 300,
        limit: Sequence[Host] | None = None,
    ) -> None:
        self.cluster = cluster
        # The hosts this run reads and changes (`--limit`); plans are still rendered from the whole inventory.
        self.hosts: tuple[Host, ...] = tuple(limit) if limit is not None else tuple(cluster.hosts)
        self.limited = len(self.hosts) < len(cluster.hosts)
        self.inputs = inputs
        self.connect = connect
        self.report = report
        self.timeout = timeout
        self.bundle = cluster.bundle_dir
        self.remotes: dict[str, Remote] = {}
        self.pending: dict[str, set[str]] = {h.name: set() for h in cluster.hosts}
        self.recorded: dict[str, set[str]] = {}  # what each host's PENDING_RESTARTS held when first read
        self.stop = threading.Event()
        self.facts: dict[str, Facts] = {}
        self.results: list[PhaseResult] = []
        self.prefetch: Prefetch | None = None
        self._lock = threading.Lock()
        self._plans: dict[tuple[str, tuple[str, ...]], dict[str, Plan]] = {}  # rendered once per run

    # -- plumbing -------------------------------------------------------------------------------------------

    def remote(self, host: Host) -> Remote:
        with self._lock:
            if host.name not in self.remotes:
                self.remotes[host.name] = self.connect(host)
            return self.remotes[host.name]

    def run(self, host: Host, step: str, command: str, check: bool = True, timeout: int | None = None):
        return self.remote(host).run(step, command, check=check, timeout=timeout or self.timeout)

    def each(self, phase: str, hosts: Iterable[Host], work: Callable[[Host], T]) -> dict[str, T]:
        """`work` on every host in parallel; the first failure stops the others at their next stage."""
        hosts = tuple(hosts)
        results: dict[str, T] = {}
        errors: list[StepFailed] = []

        def guarded(host: Host) -> None:
            if self.stop.is_set():
                return
            try:
                results[host.name] = work(host)
            except StepFailed as exc:
                self.stop.set()
                errors.append(exc)
            except Stopped:
                pass

        with ThreadPoolExecutor(max_workers=max(1, min(32, len(hosts)))) as pool:
            list(pool.map(guarded, hosts))
        if errors:
            raise DeployFailed(phase, errors, results)
        return results

    def wait(self, host: Host, check: Check) -> str:
        """Run the check's command until it succeeds; after its time, fail with its last output."""
        deadline = time.monotonic() + check.seconds
        while True:
            out = self.run(host, check.name, check.command, check=False, timeout=max(10, int(check.seconds)))
            if out.ok:
                return out.stdout
            if time.monotonic() > deadline or self.stop.is_set():
                raise StepFailed(
                    host.name, f"{check.name} (waited {check.seconds:.0f} s)", check.command, out.stderr or out.stdout
                )
            time.sleep(check.interval)

    def with_facts(self) -> Inputs:
        return dataclasses.replace(self.inputs, facts=self.facts)

    def plans(self, phase: str, comps: Sequence[Component]) -> dict[str, Plan]:
        """The components' plans on each host as one per host (applied in one round trip). Rendered once per
        run: the prefetch and the phase read the same plans."""
        key = (phase, tuple(comp.name for comp in comps))
        if key in self._plans:
            return self._plans[key]
        inputs = self.with_facts()
        try:
            self._plans[key] = {
                h.name: p for h in self.hosts if (p := components.combined_plan(inputs, h, phase, comps))
            }
        except AddonError as exc:
            raise DeployFailed(phase, [StepFailed("(operator)", "add-on manifests", "render", str(exc))]) from None
        return self._plans[key]

    def start_prefetch(self, phases: list[str]) -> None:
        """Send the binaries (and image archives) of the phases to come while the earlier ones wait on
        daemons."""
        wanted: dict[Host, list[Binary]] = {}
        for p in phases:
            try:
                plans = self.plans(p, components.of_phase(p))
            except DeployFailed:  # the add-ons' manifests: their phase reports why when it runs
                continue
            for h in self.hosts:
                if h.name in plans and plans[h.name].binaries:
                    wanted.setdefault(h, []).extend(plans[h.name].binaries)
        self.prefetch = Prefetch(self.remote, self.bundle, self.stop)
        self.prefetch.start(wanted)

    def close(self, record: bool = True) -> None:
        if self.prefetch is not None:
            self.prefetch.close()
        if record:
            self.record_pending()
        for r in self.remotes.values():
            r.close()

    def record_pending(self) -> None:
        """Leave on each host the restarts this run owed but did not do (its phase did not run or failed),
        for the next run; clear what was done. Best effort on hosts that cannot be reached."""
        for name, before in self.recorded.items():
            after = self.pending[name]
            if after == before:
                continue
            names = " ".join(sorted(after))
            command = (
                f"mkdir -p {os.path.dirname(PENDING_RESTARTS)} && printf '%s\\n' {names} > {PENDING_RESTARTS}"
                if after
                else f"rm -f {PENDING_RESTARTS}"
            )
            with contextlib.suppress(StepFailed):
                self.run(self.cluster.host(name), "record pending restarts", command, timeout=15)

    # -- preflight ------------------------------------------------------------------------------------------

    def gather(self) -> dict[str, Facts]:
        facts = self.each("preflight", self.hosts, lambda h: parse(self.run(h, "gather facts", COMMAND).stdout))
        self.facts = facts
        self._plans.clear()  # plans depend on the facts
        return facts

    def identity(self) -> list[Finding]:
        """Whether every host's CA certificates are the cluster directory's (playbooks.identity)."""
        return identity.check(self.cluster, self.inputs.credentials, self.facts or self.gather(), self.hosts)

    def preflight(self, upgrading: bool = False) -> list[Finding]:
        """Facts, identity and preflight's checks; unless `upgrading`, a cluster running other versions than the
        inventory's is refused (that is `kubefab upgrade`'s work)."""
        facts = self.gather()
        manifest = bundles.read_manifest(self.bundle)
        arch = manifest.arch if manifest else self.inputs.arch
        found = self.identity() + check(self.cluster, facts, arch, time.time(), self.hosts)
        inventory = str(self.cluster.source)
        refusal = None if upgrading else upgrade.deploy_refusal(self.cluster, facts, self.inputs.stack, inventory)
        if refusal:
            found.append(Finding("(cluster)", "versions", "fail", refusal))
        return found

    # -- the decision, shared by deploy and plan ------------------------------------------------------------

    def owe(self, host: str, found: Assessment, changed: set[str]) -> None:
        """Add to what `host` owes: the restarts an earlier run left (read once: later phases would re-queue
        what was done since) and those `changed` notified."""
        if host not in self.recorded:
            self.recorded[host] = set(found.pending_restarts)
            self.pending[host] |= found.pending_restarts
        self.pending[host] |= changed

    def actions(self, plans: Mapping[str, Plan], found: Mapping[str, Assessment]) -> dict[str, Actions]:
        return {name: decide(plan.services, found[name].services, self.pending[name]) for name, plan in plans.items()}

    def settled(self, host: str, services: Iterable[str]) -> None:
        """Started or restarted: what they were owed is done."""
        self.pending[host] -= set(services)

    def preview(self, phase: str, comps: Sequence[Component] | None = None) -> dict[str, Preview]:
        """What `phase` (or `comps`) would change on each host, changing nothing."""
        plans = self.plans(phase, components.of_phase(phase) if comps is None else comps)
        hosts = [h for h in self.hosts if h.name in plans]
        found = self.each(phase, hosts, lambda h: assess(self.remote(h), plans[h.name], self.bundle))
        for name, f in found.items():
            self.owe(name, f, notified(f))
        actions = self.actions(plans, found)
        for name, act in actions.items():
            self.settled(name, (*act.start, *act.restart))
        finals = self.each(
            phase,
            hosts,
            lambda h: tuple(
                s
                for s in plans[h.name].final_steps
                if not self.run(h, f"{phase}: check {s.name}", s.unless, check=False).ok
            ),
        )
        return {n: Preview(plans[n], found[n], actions[n], finals[n]) for n in plans}

    # -- deploy ---------------------------------------------------------------------------------------------

    def phase(self, name: str, comps: Sequence[Component] | None = None) -> PhaseResult:
        """Run one phase: its components (or `comps`) over their hosts. Its result is kept in self.results,
        complete or up to the failure."""
        start = time.monotonic()
        result = PhaseResult(name)
        self.results.append(result)
        comps = components.of_phase(name) if comps is None else comps
        try:
            plans = self.plans(name, comps)
            if not plans:
                result.note = (
                    "skipped: the inventory selects no add-ons" if name == "addons" else "no host has this role"
                )
                return result
            found = self.apply(name, plans, result)
            self.services(name, comps, plans, self.actions(plans, found), result)
            self.final_steps(name, plans, result)
            self.verify(name, plans, comps)
        except DeployFailed as exc:
            for e in exc.errors:
                result.hosts.setdefault(e.host, Tally()).failed = e.step
            raise
        finally:
            result.seconds = time.monotonic() - start
        return result

    def apply(self, phase: str, plans: dict[str, Plan], result: PhaseResult) -> dict[str, Assessment]:
        def apply_host(host: Host) -> tuple[Assessment, Outcome]:
            plan = plans[host.name]
            found = assess(self.remote(host), plan, self.bundle)
            if self.stop.is_set():
                raise Stopped
            if not found.empty:
                self.report(host.name, f"{phase}: changing {found.count} item(s)")
            staged = self.prefetch.staged(host, found.binaries) if self.prefetch and found.binaries else {}
            outcome = execute(self.remote(host), plan, found, self.bundle, staged)
            if outcome.units_changed:
                self.run(host, f"{phase}: systemctl daemon-reload", "systemctl daemon-reload")
            return found, outcome

        try:
            done = self.each(phase, (h for h in self.hosts if h.name in plans), apply_host)
        except DeployFailed as exc:
            self.tally(exc.done, result)  # what did change is owed its restarts by the next run
            raise
        self.tally(done, result)
        return {n: found for n, (found, _) in done.items()}

    def tally(self, done: dict[str, tuple[Assessment, Outcome]], result: PhaseResult) -> None:
        for name, (found, outcome) in done.items():
            result.hosts[name] = Tally(outcome.changed, found.unchanged)
            self.owe(name, found, outcome.notified)

    def services(
        self,
        phase: str,
        comps: Sequence[Component],
        plans: dict[str, Plan],
        actions: dict[str, Actions],
        result: PhaseResult,
    ) -> None:
        """Start (and enable) what is not running, on every host at once; then the restarts, one host at a time
        when a restarted service's component restarts rolling."""
        no_block = {s for comp in comps if comp.start == "no-block" for s in comp.services}
        rolling = {s for comp in comps if comp.restart == "rolling" for s in comp.services}
        reloads = {s for comp in comps if comp.reload for s in comp.services}

        def start(host: Host) -> None:
            act = actions[host.name]
            if act.start:
                self.rotate(phase, comps, [host], "drain", act.start)
            if act.enable or act.start:
                wanted = list(dict.fromkeys((*act.enable, *act.start)))
                groups = (
                    ("enable -q", act.enable),
                    ("start", [s for s in act.start if s not in no_block]),
                    ("start --no-block", [s for s in act.start if s in no_block]),
                )
                commands = [f"systemctl {verb} {' '.join(names)}" for verb, names in groups if names]
                self.systemctl(host, f"{phase}: enable and start {' '.join(wanted)}", " && ".join(commands), wanted)
                self.settled(host.name, act.start)
                result.hosts[host.name].started += wanted
                self.report(host.name, f"{phase}: started {' '.join(wanted)}")

        def restart(host: Host) -> None:
            wanted = actions[host.name].restart
            if wanted:
                groups = (
                    ("restart", [s for s in wanted if s not in reloads]),
                    ("reload-or-restart", [s for s in wanted if s in reloads]),
                )
                command = " && ".join(f"systemctl {verb} {' '.join(names)}" for verb, names in groups if names)
                drained = self.rotate(phase, comps, [host], "drain", wanted)
                self.systemctl(host, f"{phase}: restart {' '.join(wanted)}", command, list(wanted))
                self.settled(host.name, wanted)
                result.hosts[host.name].restarted += wanted
                self.report(host.name, f"{phase}: restarted {' '.join(wanted)}")
                if rolling & set(wanted):
                    for c in plans[host.name].checks:
                        if c.scope == "each":
                            self.wait(host, c)
                    if drained:
                        self.rotate(phase, comps, [host], "ready", wanted)

        hosts = [h for h in self.hosts if h.name in actions]
        self.each(phase, hosts, start)
        if any(rolling & set(actions[h.name].restart) for h in hosts):
            for host in hosts:
                self.each(phase, (host,), restart)
        else:
            self.each(phase, hosts, restart)

    def rotate(self, phase: str, comps: Sequence[Component], hosts: Sequence[Host], state: str, services) -> bool:
        """`hosts`' services out of ("drain") or into ("ready") their load balancers' rotation, one round trip per
        balancing host; whether there was any. A balancer not running yet has nothing to change: not a failure."""
        by_balancer: dict[str, tuple[Host, list[str]]] = {}
        for comp in comps:
            for host in hosts:
                if set(comp.services) & set(services):
                    for balancer, command in comp.rotation(self.cluster, host, state):
                        by_balancer.setdefault(balancer.name, (balancer, []))[1].append(command)
        for balancer, commands in by_balancer.values():
            names = " ".join(h.name for h in hosts)
            self.run(balancer, f"{phase}: {names} {state} in rotation", "; ".join(commands), check=False)
        if by_balancer and state == "drain":
            time.sleep(1)  # requests already on their way through it finish
        return bool(by_balancer)

    def systemctl(self, host: Host, step: str, command: str, services: list[str]) -> None:
        """A start or restart; when it fails, the services' last journal lines come with the error."""
        out = self.run(host, step, command, check=False)
        if not out.ok:
            journal = self.run(
                host,
                f"{step}: journal",
                "journalctl --no-pager -o cat -n 8 " + " ".join(f"-u {s}" for s in services),
                check=False,
            ).stdout
            raise StepFailed(host.name, step, command, f"{out.stderr}\nlast journal lines:\n{journal}")

    def final_steps(self, phase: str, plans: dict[str, Plan], result: PhaseResult) -> None:
        """The cluster-wide steps (through the API), once every host of the phase is in place."""

        def run(host: Host) -> None:
            for step in plans[host.name].final_steps:
                if self.run(host, f"{phase}: check {step.name}", step.unless, check=False).ok:
                    continue
                self.run(host, f"{phase}: {step.name}", step.run)
                result.hosts[host.name].changed.append(f"step {step.name}")
                self.report(host.name, f"{phase}: {step.name}")

        self.each(phase, (h for h in self.hosts if h.name in plans and plans[h.name].final_steps), run)

    def verify(self, phase: str, plans: dict[str, Plan], comps: Sequence[Component] = ()) -> None:
        """The phase's checks: every host's own ("each") in parallel, each host then back in its load balancers'
        rotation (started now, or left drained by a stopped run), then the checks that need exactly one host to
        pass, then those for the whole cluster ("once")."""
        hosts = [h for h in self.hosts if h.name in plans]
        services = {s for comp in comps for s in comp.services}

        def own(host: Host) -> None:
            for c in plans[host.name].checks:
                if c.scope == "each":
                    self.wait(host, c)
            self.rotate(phase, comps, [host], "ready", services)

        self.each(phase, hosts, own)
        groups: dict[Check, list[Host]] = {}
        for h in hosts:
            for c in plans[h.name].checks:
                if c.scope == "exactly-one":
                    groups.setdefault(c, []).append(h)
        for c, members in groups.items():
            if self.limited:  # the one host that should pass may be outside the limit
                self.report(members[0].name, f"{phase}: {c.name}: not checked under --limit")
                continue
            self.exactly_one(phase, c, members)
        once: dict[Check, Host] = {}
        for h in hosts:
            for c in plans[h.name].checks:
                if c.scope == "once":
                    once.setdefault(c, h)
        for c, h in once.items():
            self.each(phase, (h,), lambda host, c=c: self.wait(host, c))

    def exactly_one(self, phase: str, c: Check, hosts: list[Host]) -> None:
        deadline = time.monotonic() + c.seconds
        while True:
            passing = [
                n
                for n, out in self.each(phase, hosts, lambda h: self.run(h, c.name, c.command, check=False)).items()
                if out.ok
            ]
            if len(passing) == 1 or time.monotonic() > deadline:
                break
            time.sleep(c.interval)
        if len(passing) != 1:
            raise DeployFailed(
                phase,
                [StepFailed(hosts[0].name, c.name, c.command, f"passed on: {', '.join(sorted(passing)) or 'no host'}")],
            )
        self.report(passing[0], f"{phase}: {c.name}: {passing[0]}")
