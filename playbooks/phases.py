"""The deploy: phases in order, hosts in parallel within a phase, each phase ending in a real check.

A step that fails on one host stops the phase: the other hosts finish the stage they are in, nothing later
runs, and the error names the host, the step, the command and the tail of stderr. Services are started
where they are not running and restarted only when a file they read changed; etcd members and apiservers
restart one host at a time, each followed by its health check."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from playbooks import bundle as bundles
from playbooks import dns
from playbooks.apply import PENDING_RESTARTS, Assessment, Outcome, assess, execute
from playbooks.facts import COMMAND, Facts, parse
from playbooks.model import Cluster, Host
from playbooks.plan import Binary, File, Plan
from playbooks.plans import HOST_PHASES, images
from playbooks.plans.addons import AddonError, manifests
from playbooks.plans.certificates import leaves
from playbooks.plans.inputs import REMOTE_PKI, Inputs
from playbooks.prefetch import Prefetch
from playbooks.preflight import Finding, check
from playbooks.remote import Remote, StepFailed

PHASES = ("preflight", *HOST_PHASES, "addons")
ROLLING = {"etcd", "control-plane"}  # restarted one host at a time
ADMIN = "/etc/kubernetes/admin.conf"
ADDONS_DIR = "/etc/kubernetes/addons"
T = TypeVar("T")


class DeployFailed(Exception):
    def __init__(self, phase: str, errors: list[StepFailed], done: dict | None = None) -> None:
        self.phase, self.errors = phase, errors
        self.done = done or {}  # what the hosts that did not fail returned
        super().__init__(f"phase {phase} failed; later phases did not run\n" + "\n".join(str(e) for e in errors))


class Stopped(Exception):
    """Another host failed: this one stops before its next stage."""


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


def http_ok(host: str, port: int, path: str) -> str:
    """A shell test that `http://host:port/path` answers 200, with bash alone (no curl on minimal hosts)."""
    script = (f"exec 3<>/dev/tcp/{host}/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' >&3 "
              "&& head -1 <&3 | grep -q ' 200 '")
    return f"timeout 5 bash -c {shlex.quote(script)}"


class Deployment:
    def __init__(self, cluster: Cluster, inputs: Inputs, report: Callable[[str, str], None],
                 command_log: Callable[[str, str], None] | None = None, command_timeout: int = 300) -> None:
        self.c = cluster
        self.inputs = inputs
        self.report = report
        self.command_log = command_log
        self.timeout = command_timeout
        self.bundle = cluster.bundle_dir
        self.remotes: dict[str, Remote] = {}
        self.pending: dict[str, set[str]] = {h.name: set() for h in cluster.hosts}
        self.recorded: dict[str, set[str]] = {}  # what each host's PENDING_RESTARTS held when first read
        self.stop = threading.Event()
        self.facts: dict[str, Facts] = {}
        self.results: list[PhaseResult] = []
        self.prefetch: Prefetch | None = None

    # -- plumbing -------------------------------------------------------------------------------------------

    def remote(self, host: Host) -> Remote:
        if host.name not in self.remotes:
            self.remotes[host.name] = Remote(self.c, host, self.command_log, timeout=self.timeout)
        return self.remotes[host.name]

    def run(self, host: Host, step: str, command: str, check: bool = True, timeout: int | None = None):
        return self.remote(host).run(step, command, check=check, timeout=timeout or self.timeout)

    def each(self, phase: str, hosts: tuple[Host, ...], work: Callable[[Host], T]) -> dict[str, T]:
        """`work` on every host in parallel; the first failure stops the others at their next stage."""
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

    def wait(self, host: Host, step: str, command: str, seconds: float, interval: float = 1.0) -> str:
        """Run `command` until it succeeds; after `seconds`, fail with its last output."""
        deadline = time.monotonic() + seconds
        while True:
            out = self.run(host, step, command, check=False, timeout=max(10, int(seconds)))
            if out.ok:
                return out.stdout
            if time.monotonic() > deadline or self.stop.is_set():
                raise StepFailed(host.name, f"{step} (waited {seconds:.0f} s)", command, out.stderr or out.stdout)
            time.sleep(interval)

    def start_prefetch(self, phases: list[str]) -> None:
        """Send the binaries of the phases to come while the earlier ones wait on daemons."""
        wanted: dict[Host, list[Binary]] = {}
        for h in self.c.hosts:
            plans = [HOST_PHASES[p](self.with_facts(), h) for p in phases if p in HOST_PHASES]
            if "addons" in phases and self.c.addons:  # the image archives, the largest files after kubelet's
                plans.append(images.plan(self.with_facts(), h, self.bundle))
            found = [b for plan in plans if plan is not None for b in plan.binaries]
            if found:
                wanted[h] = found
        self.prefetch = Prefetch(self.remote, self.bundle, self.stop)
        self.prefetch.start(wanted)

    def close(self) -> None:
        if self.prefetch is not None:
            self.prefetch.close()
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
            command = (f"mkdir -p {os.path.dirname(PENDING_RESTARTS)} && printf '%s\\n' {names} > {PENDING_RESTARTS}"
                       if after else f"rm -f {PENDING_RESTARTS}")
            with contextlib.suppress(StepFailed):
                self.run(self.c.host(name), "record pending restarts", command, timeout=15)

    # -- phases ---------------------------------------------------------------------------------------------

    def preflight(self) -> list[Finding]:
        facts = self.each("preflight", self.c.hosts, lambda h: parse(self.run(h, "gather facts", COMMAND).stdout))
        self.facts = facts
        manifest = bundles.read_manifest(self.bundle)
        return check(self.c, facts, manifest.arch if manifest else self.inputs.arch, time.time())

    def apply_phase(self, phase: str, plans: dict[str, Plan], result: PhaseResult) -> None:
        hosts = tuple(h for h in self.c.hosts if h.name in plans)

        def apply_host(host: Host) -> tuple[Assessment, Outcome]:
            plan = plans[host.name]
            found = assess(self.remote(host), plan, self.bundle)
            if self.stop.is_set():
                raise Stopped
            if not found.empty:
                self.report(host.name, f"{phase}: changing {_count(found)} item(s)")
            staged = self.prefetch.staged(host, found.binaries) if self.prefetch and found.binaries else {}
            outcome = execute(self.remote(host), plan, found, self.bundle, staged)
            if outcome.units_changed:
                self.run(host, f"{phase}: systemctl daemon-reload", "systemctl daemon-reload")
            return found, outcome

        try:
            done = self.each(phase, hosts, apply_host)
        except DeployFailed as exc:
            self.tally(exc.done, result)  # what did change is owed its restarts by the next run
            raise
        self.tally(done, result)
        self.services(phase, plans, {n: found for n, (found, _) in done.items()}, result)

    def tally(self, done: dict[str, tuple[Assessment, Outcome]], result: PhaseResult) -> None:
        for name, (found, outcome) in done.items():
            result.hosts[name] = Tally(outcome.changed, found.unchanged)
            if name not in self.recorded:  # read once: later phases would re-queue what was done since
                self.recorded[name] = set(found.pending_restarts)
                self.pending[name] |= found.pending_restarts
            self.pending[name] |= outcome.notified

    def services(self, phase: str, plans: dict[str, Plan], found: dict[str, Assessment], result: PhaseResult) -> None:
        hosts = tuple(h for h in self.c.hosts if h.name in plans and plans[h.name].services)
        starts: dict[str, list[str]] = {}
        restarts: dict[str, list[str]] = {}
        for h in hosts:
            services = plans[h.name].services
            state = found[h.name].services
            starts[h.name] = [s for s in services if state.get(s, ("", ""))[0] != "enabled"
                              or state.get(s, ("", ""))[1] not in ("active", "activating", "reloading")]
            restarts[h.name] = [s for s in services if s in self.pending[h.name] and s not in starts[h.name]]
            self.pending[h.name] -= set(services)

        def start(host: Host) -> None:
            wanted = starts[host.name]
            if wanted:
                # A new etcd member's start blocks until a quorum exists: start every member without waiting.
                block = "--no-block " if phase == "etcd" else ""
                self.systemctl(host, f"{phase}: enable and start {' '.join(wanted)}",
                               f"systemctl enable -q {' '.join(wanted)} && systemctl start {block}{' '.join(wanted)}",
                               wanted)
                result.hosts[host.name].started += wanted
                self.report(host.name, f"{phase}: started {' '.join(wanted)}")

        self.each(phase, hosts, start)

        def restart(host: Host) -> None:
            wanted = restarts[host.name]
            if wanted:
                self.systemctl(host, f"{phase}: restart {' '.join(wanted)}", f"systemctl restart {' '.join(wanted)}",
                               wanted)
                result.hosts[host.name].restarted += wanted
                self.report(host.name, f"{phase}: restarted {' '.join(wanted)}")
                if phase in ROLLING:
                    self.ready(phase, host)

        if phase in ROLLING:
            for host in hosts:
                self.each(phase, (host,), restart)
        else:
            self.each(phase, hosts, restart)

    def systemctl(self, host: Host, step: str, command: str, services: list[str]) -> None:
        """A start or restart; when it fails, the services' last journal lines come with the error."""
        out = self.run(host, step, command, check=False)
        if not out.ok:
            journal = self.run(host, f"{step}: journal", "journalctl --no-pager -o cat -n 8 "
                               + " ".join(f"-u {s}" for s in services), check=False).stdout
            raise StepFailed(host.name, step, command, f"{out.stderr}\nlast journal lines:\n{journal}")

    def ready(self, phase: str, host: Host) -> None:
        """The per-host health check a rolling restart waits for before the next host."""
        if phase == "etcd":
            self.wait(host, "etcd member health", self.etcdctl(f"https://{host.address}:2379", "endpoint health"), 90)
        elif phase == "control-plane":
            self.wait(host, "apiserver /readyz", self.kubectl(f"https://127.0.0.1:{self.c.api.apiserver_port}"), 90)

    def etcdctl(self, endpoints: str, command: str) -> str:
        return (f"ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints={endpoints} --dial-timeout=3s "
                f"--command-timeout=5s --cacert={REMOTE_PKI}/etcd/ca.crt "
                f"--cert={REMOTE_PKI}/etcd/healthcheck-client.crt --key={REMOTE_PKI}/etcd/healthcheck-client.key "
                f"{command}")

    def kubectl(self, server: str | None = None, args: str = "get --raw /readyz") -> str:
        return f"/usr/local/bin/kubectl --kubeconfig={ADMIN} {f'--server={server} ' if server else ''}{args}"

    # -- checks: each phase ends with one ------------------------------------------------------------------

    def check_prepare(self, plans: dict[str, Plan]) -> None:
        def verify(host: Host) -> None:
            for step in plans[host.name].steps:
                self.run(host, f"prepare check: {step.name}", step.unless)

        self.each("prepare", tuple(h for h in self.c.hosts if h.name in plans), verify)

    def check_certificates(self, plans: dict[str, Plan]) -> None:
        def verify(host: Host) -> None:
            commands = [f"openssl verify -CAfile {ca} {crt} >/dev/null" for crt, ca in leaves(self.c, host)]
            if commands:
                self.run(host, "certificates check: openssl verify", " && ".join(commands))

        self.each("certificates", tuple(h for h in self.c.hosts if h.name in plans), verify)

    def check_etcd(self) -> None:
        endpoints = ",".join(f"https://{h.address}:2379" for h in self.c.etcd_hosts)
        self.wait(self.c.etcd_hosts[0], "etcd cluster health (mutual TLS, every member)",
                  self.etcdctl(endpoints, "endpoint health"), 120)

    def check_lb(self) -> None:
        vip, port = self.c.api.vip, self.c.api.port
        deadline = time.monotonic() + 30
        while True:
            holders = [n for n, out in self.each("lb", self.c.lb_hosts, lambda h: self.run(
                h, "lb check: VIP holder", "ip -o -4 addr show").stdout).items() if f" {vip}/" in out]
            if len(holders) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if len(holders) != 1:
            raise DeployFailed("lb", [StepFailed(self.c.lb_hosts[0].name, "lb check: exactly one host holds the VIP",
                                                 "ip -o -4 addr show", f"VIP {vip} held by: {holders or 'nobody'}")])
        holder = self.c.host(holders[0])
        self.wait(holder, f"lb check: HAProxy accepts on {vip}:{port}",
                  f"timeout 3 bash -c '</dev/tcp/{vip}/{port}'", 30)
        self.report(holder.name, f"lb: holds the VIP {vip}; HAProxy accepts on {port}")

    def check_control_plane(self) -> None:
        def local(host: Host) -> None:
            self.ready("control-plane", host)
            self.wait(host, "controller-manager and scheduler running",
                      "systemctl is-active -q kube-controller-manager kube-scheduler", 60)

        self.each("control-plane", self.c.control_plane, local)
        # Through the VIP (or the single apiserver) with the admin credentials: TLS verified against the
        # cluster CA and the server address, as every client will.
        self.wait(self.c.control_plane[0], f"/readyz through {self.c.server_url}", self.kubectl(), 90)

    def check_nodes(self) -> None:
        def verify(host: Host) -> None:
            self.wait(host, "containerd, kubelet, kube-proxy running",
                      "systemctl is-active -q containerd kubelet kube-proxy", 60)
            self.wait(host, "kubelet /healthz", http_ok("127.0.0.1", 10248, "/healthz"), 60)
            self.wait(host, "kube-proxy /healthz", http_ok("127.0.0.1", 10256, "/healthz"), 60)

        self.each("nodes", self.c.workers, verify)

    def addons(self, result: PhaseResult) -> None:
        if not self.c.addons:
            result.note = "skipped: the inventory selects no add-ons"
            return
        try:
            docs = manifests(self.inputs, self.bundle)
        except AddonError as exc:
            raise DeployFailed("addons", [StepFailed("(operator)", "add-on manifests", "render", str(exc))]) from None
        first = self.c.control_plane[0]
        # Every node gets the images first (imported from the bundle unless a registry serves them); the first
        # control-plane host also holds the manifests it applies.
        plans = {h.name: p for h in self.c.hosts if (p := images.plan(self.inputs, h, self.bundle))}
        files = tuple(File(f"{ADDONS_DIR}/{n}", body) for n, body in docs.items())
        own = plans.get(first.name)
        plans[first.name] = dataclasses.replace(own, component="addons", files=files) if own else Plan(
            first.name, "addons", files=files)
        self.apply_phase("addons", plans, result)
        out = self.run(first, "addons: kubectl apply", self.kubectl(args=f"apply -f {ADDONS_DIR}/")).stdout
        changed = [line for line in out.splitlines() if line.endswith(("created", "configured"))]
        result.hosts[first.name].changed += changed
        if "cni" in self.c.addons:  # without a network plugin no node becomes Ready
            self.wait(first, "nodes Ready", self.kubectl(args="wait --for=condition=Ready nodes --all --timeout=10s"),
                      600, 5)
        if "coredns" in self.c.addons:
            self.wait(first, "CoreDNS available",
                      self.kubectl(args="-n kube-system rollout status deployment/coredns --timeout=10s"), 600, 5)
            name = f"kubernetes.default.svc.{self.c.network.domain}"
            self.wait(first, f"CoreDNS answers {name} at {self.c.network.dns_ip}",
                      dns.query_command(name, str(self.c.network.dns_ip)), 60, 2)
        skipped = [a for a in ("cni", "coredns") if a not in self.c.addons]
        if skipped:
            result.note = f"not selected by the inventory: {', '.join(skipped)}"

    def checks(self) -> dict[str, Callable[[dict[str, Plan]], None]]:
        return {
            "prepare": self.check_prepare,
            "certificates": self.check_certificates,
            "etcd": lambda plans: self.check_etcd(),
            "lb": lambda plans: self.check_lb() if self.c.api.vip is not None else None,
            "control-plane": lambda plans: self.check_control_plane(),
            "nodes": lambda plans: self.check_nodes(),
        }

    def phase(self, name: str) -> PhaseResult:
        """Run one phase; its result is kept in self.results, complete or up to the failure."""
        start = time.monotonic()
        result = PhaseResult(name)
        self.results.append(result)
        try:
            if name == "addons":
                self.addons(result)
            else:
                plans = {h.name: p for h in self.c.hosts if (p := HOST_PHASES[name](self.with_facts(), h))}
                if not plans:
                    result.note = "no host has this role"
                else:
                    self.apply_phase(name, plans, result)
                    self.checks()[name](plans)
        except DeployFailed as exc:
            for e in exc.errors:
                result.hosts.setdefault(e.host, Tally()).failed = e.step
            raise
        finally:
            result.seconds = time.monotonic() - start
        return result

    def with_facts(self) -> Inputs:
        return dataclasses.replace(self.inputs, facts=self.facts)


def _count(found: Assessment) -> int:
    return (len(found.files) + len(found.perms) + len(found.blocks) + len(found.binaries) + len(found.directories)
            + len(found.users) + len(found.steps))
