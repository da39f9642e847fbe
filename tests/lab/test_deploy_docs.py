"""The docs' commands that need hosts, run against the session's lab (tests/docs_commands.py says how each one is
exercised). The lab's inventory stands for the docs' (`inventory/mycluster.yaml`, `inventory/vagrant.yaml`), its
cluster directory for theirs, lab-1..3 for their hosts k8s-1..3, with addresses, VIP and interface mapped.

Deploys run one after the other (a re-run changes nothing, a few seconds each); the read-only commands then run
side by side. `lab.up`, `lab.add` and `lab.down` are not run: they would replace or end the session's lab. Each
is checked to parse to what the session fixture does through playbooks.lab.lifecycle, which the task calls."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from docs_commands import CLUSTER_DIRS, INVENTORIES, LAB_INVENTORY, ROOT, Command, commands, rule_for, unique
from invoke.parser import Parser, ParserContext
from labkit import TIMINGS, Lab, cli

from kubefab.playbooks import ca_rotation
from kubefab.playbooks.inventory import load
from kubefab.playbooks.lab import tasks as lab_tasks
from kubefab.playbooks.lab.settings import DEFAULT_DIR
from kubefab.playbooks.tasks import ns

pytestmark = pytest.mark.lab
LAB = unique(commands(), "lab")
DOC_INVENTORIES = (ROOT / "inventory" / "example.yaml", ROOT / "inventory" / "vagrant.yaml")


@dataclass
class Outcome:
    ok: bool
    detail: str


def mapping(lab: Lab) -> list[tuple[str, str]]:
    """(what the docs say, what the lab has): inventories, cluster directories, host names, addresses, VIP and
    interface of the example and Vagrant inventories."""
    cluster = load(lab.paths.inventory)
    pairs = [(p, str(lab.paths.inventory)) for p in INVENTORIES]
    pairs += [(d, str(cluster.dir)) for d in CLUSTER_DIRS]
    pairs.append((str(DEFAULT_DIR), str(lab.paths.root)))
    for path in DOC_INVENTORIES:
        doc = load(path)
        for theirs, ours in zip(doc.hosts, cluster.hosts, strict=False):
            pairs += [(theirs.name, ours.name), (str(theirs.address), str(ours.address))]
        pairs += [(str(doc.api.vip), str(cluster.api.vip)), (doc.api.interface, cluster.api.interface)]
    return pairs


def rewrite(text: str, lab: Lab) -> str:
    """One pass, longest names first, so a replacement is never rewritten again (a lab directory named like
    the default one plus a suffix would be, replacement after replacement)."""
    pairs = dict(sorted(mapping(lab), key=lambda p: -len(p[0])))
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(k) for k in pairs) + r")(?![\w])")
    return pattern.sub(lambda m: pairs[m.group(1)], text)


def parsed(argv: list[str]) -> dict[str, object]:
    """`kubefab TASK ...` parsed as the program parses it: the task's arguments with their defaults."""
    task = ns[argv[1]]
    result = Parser(contexts=[ParserContext(name=argv[1], args=task.get_arguments())]).parse_argv(argv[1:])
    assert not result.unparsed
    return {k: a.value for k, a in result[0].args.items()}


def shown(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


def run_kubefab(lab: Lab, text: str, *needles: str, absent: tuple[str, ...] = ()) -> Outcome:
    result, seconds = cli(*Command(text, "", 0).argv[1:])
    TIMINGS[f"docs: {text}"] = seconds
    out = result.stdout + result.stderr
    missing = [n for n in needles if n not in out] + [f"not {a!r}" for a in absent if a in out]
    ok = result.returncode == 0 and not missing
    return Outcome(ok, "" if ok else f"missing {missing}\n{shown(result)}")


def run_deploy(lab: Lab, text: str) -> Outcome:
    argv = Command(text, "", 0).argv
    options = parsed(argv)
    needles = ["deploy finished in", "preflight"]
    absent: tuple[str, ...] = ()
    if options["only"]:
        phases = str(options["only"]).split(",")
        needles += [f"== {p}" for p in phases if p != "preflight"]
        absent = tuple(
            f"== {p}" for p in ("prepare", "certificates", "etcd", "lb", "control-plane", "nodes") if p not in phases
        )
    if options["verbose"]:
        needles.append("$ ")
    return run_kubefab(lab, text, *needles, absent=absent)


def run_plan(lab: Lab, text: str) -> Outcome:
    return run_kubefab(lab, text, "preflight", "no changes: the hosts match the inventory")


def run_verify(lab: Lab, text: str) -> Outcome:
    return run_kubefab(lab, text, f"verify: every check passed on {len(lab.state.hosts)} hosts")


def run_status(lab: Lab, text: str) -> Outcome:
    return run_kubefab(lab, text, *(h.name for h in lab.state.hosts), *(h.ip for h in lab.state.hosts))


def run_ssh(lab: Lab, text: str) -> Outcome:
    options = parsed(Command(text, "", 0).argv)
    assert options["command"], "an interactive `lab.ssh` cannot run in a test: give --command"
    needles = ("active (running)",) if "systemctl status" in str(options["command"]) else ()
    return run_kubefab(lab, text, *needles)


def on_host(lab: Lab, host: str, command: str) -> tuple[int, str, str]:
    result = lab.connections[host].run(command, hide=True, warn=True, in_stream=False)
    return result.exited, result.stdout, result.stderr


def run_restore_check(lab: Lab, text: str) -> Outcome:
    """The docs' snapshot name is an example: the newest snapshot of the lab's cluster stands for it."""
    backups = load(lab.paths.inventory).dir / "backups"
    if not sorted(backups.glob("etcd-*.db")):
        taken, _ = cli("etcd.backup", "--inventory", str(lab.paths.inventory))
        if taken.returncode != 0:
            return Outcome(False, shown(taken))
    newest = sorted(backups.glob("etcd-*.db"))[-1]
    argv = Command(text, "", 0).argv
    named = next(a for a in argv if a.endswith(".db"))
    rewritten = " ".join(str(newest) if a == named else a for a in argv)
    return run_kubefab(lab, rewritten, "restores to revision", "the cluster was not touched")


def run_reset_dry(lab: Lab, text: str) -> Outcome:
    result, seconds = cli(*Command(text, "", 0).argv[1:])
    TIMINGS[f"docs: {text}"] = seconds
    out = result.stdout + result.stderr
    ok = result.returncode == 2 and "would: etcd stopped and disabled" in out and "nothing was changed" in out
    return Outcome(ok, "" if ok else f"expected exit 2 and the list of what reset would remove\n{shown(result)}")


def run_node_remove_dry(lab: Lab, text: str) -> Outcome:
    before = lab.paths.inventory.read_text()
    result, seconds = cli(*Command(text, "", 0).argv[1:])
    TIMINGS[f"docs: {text}"] = seconds
    out = result.stdout + result.stderr
    same = lab.paths.inventory.read_text() == before
    ok = result.returncode == 2 and "nothing was changed" in out and ("would:" in out or "refused" in out) and same
    return Outcome(ok, "" if ok else f"expected exit 2, nothing changed (inventory same: {same})\n{shown(result)}")


def check_node_remove(lab: Lab, text: str) -> Outcome:
    """Equivalence: the docs' removal parses to --yes on the lab's first host, which test_membership.py removes
    with the same arguments."""
    options = parsed(Command(text, "", 0).argv)
    source = (Path(__file__).parent / "test_membership.py").read_text()
    runs = 'cli("node.remove", gone.name, "--inventory", str(inventory), "--yes"' in source
    ok = options.get("yes") is True and options.get("name") == load(lab.paths.inventory).hosts[0].name and runs
    return Outcome(ok, "" if ok else f"{options}: not --yes on the first host (test_membership runs it: {runs})")


def run_elsewhere(text: str, module: str, call: str, **options: object) -> Outcome:
    """Equivalence: the docs' command parses to `options`, and the lab module `module` makes the call `call`."""
    got = parsed(Command(text, "", 0).argv)
    runs = call in (Path(__file__).parent / module).read_text()
    ok = runs and all(got.get(k) == v for k, v in options.items())
    return Outcome(ok, "" if ok else f"{got}: not {options}, or {module} does not run {call} ({runs})")


def check_rotate_ca(lab: Lab, text: str) -> Outcome:
    names = [n for n in str(parsed(Command(text, "", 0).argv)["ca"]).split(",") if n]
    try:
        ca_rotation.selected(load(lab.paths.inventory), names)
    except ca_rotation.RotationError as exc:
        return Outcome(False, f"{text}: {exc}")
    return run_elsewhere(
        text, "test_kubernetes_ca_rotation.py", 'cli("certs.rotate-ca", "--inventory", inventory, timeout=1200)'
    )


# What a command typed on a host must print, by what it is.
HOST_EXPECTS = (
    ("openssl verify", ": OK"),
    ("openssl x509", "subject="),
    ("endpoint health", "is healthy"),
    ("member list", "started"),
    ("ss -ltnp", ":6443"),
    ("journalctl", " "),
)


def run_host(lab: Lab, text: str) -> Outcome:
    """Typed on a host in the docs: run on lab-1, which has every role."""
    code, stdout, stderr = on_host(lab, "lab-1", text)
    out = stdout + stderr  # etcdctl reports health on stderr
    cluster = load(lab.paths.inventory)
    needles = [n for what, n in HOST_EXPECTS if what in text]
    if " addr show " in text:
        needles.append(f"inet {cluster.api.vip}/")
    if "endpoint health" in text:
        needles += [f"https://{h.address}:2379 is healthy" for h in cluster.etcd_hosts if str(h.address) in text]
    missing = [n for n in needles if n not in out]
    ok = code == 0 and not missing
    return Outcome(ok, "" if ok else f"exit {code}, missing {missing}:\n{out[-3000:]}")


def run_kubectl_raw(lab: Lab, text: str) -> Outcome:
    """On this machine, with the lab's admin kubeconfig: through the VIP like any client."""
    if shutil.which("kubectl") is None:
        return Outcome(False, "kubectl is not installed on this machine (.ci/install installs it)")
    result = subprocess.run(Command(text, "", 0).argv, capture_output=True, text=True, timeout=30)
    ok = result.returncode == 0 and result.stdout.strip() == "ok"
    return Outcome(ok, "" if ok else shown(result))


def run_kubectl_nodes(lab: Lab, text: str) -> Outcome:
    """On lab-1 with the cluster's kubectl (this machine's may be minors older) and the admin kubeconfig, which
    names the VIP: every lab host is listed as a node."""
    code, out, err = on_host(
        lab, "lab-1", "sudo /usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes"
    )
    names = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    ok = code == 0 and sorted(names) == sorted(h.name for h in lab.state.hosts)
    return Outcome(ok, "" if ok else f"exit {code}:\n{out[-2000:]}\n{err[-2000:]}")


def check_lab_up(lab: Lab, text: str) -> Outcome:
    """Equivalence: the arguments the docs' `lab.up` parses to are the session fixture's `lifecycle.up(3)` with
    the default subnet and bridge, which is what the task calls; it writes the inventory the docs name."""
    options = parsed(Command(text, "", 0).argv)
    fixture = {"hosts": len(lab.state.hosts), "subnet": lab.state.subnet, "bridge": lab.state.bridge}
    calls = "lifecycle.up(" in inspect.getsource(lab_tasks.up)
    ok = options == fixture and calls and Path(LAB_INVENTORY) == DEFAULT_DIR / "inventory.yaml"
    return Outcome(ok, "" if ok else f"{options} != the session lab {fixture} (task calls lifecycle.up: {calls})")


def check_lab_down(lab: Lab, text: str) -> Outcome:
    """Equivalence: `lab.down` takes no arguments and calls lifecycle.down, which ends the session's lab
    (test_lab_teardown.py checks nothing is left)."""
    ok = parsed(Command(text, "", 0).argv) == {} and "lifecycle.down(" in inspect.getsource(lab_tasks.down)
    return Outcome(ok, "" if ok else f"{text}: not the plain `kubefab lab.down` the session fixture runs")


def check_lab_add(lab: Lab, text: str) -> Outcome:
    """Equivalence: the docs' `lab.add` parses to one host, what test_membership.py passes to lifecycle.add,
    which the task calls."""
    options = parsed(Command(text, "", 0).argv)
    calls = "lifecycle.add(" in inspect.getsource(lab_tasks.add)
    ok = options == {"hosts": 1} and calls
    return Outcome(ok, "" if ok else f"{options} != one host (task calls lifecycle.add: {calls})")


HANDLERS: dict[str, Callable[[Lab, str], Outcome]] = {
    "deploy": run_deploy,
    "plan": run_plan,
    "verify": run_verify,
    "certs.check.hosts": lambda lab, text: run_kubefab(lab, text, "certificates ok"),
    "upgrade": lambda lab, text: run_kubefab(lab, text, "nothing to upgrade"),
    "etcd.backup": lambda lab, text: run_kubefab(lab, text, "etcd snapshot ", " keys, sha256 "),
    "certs.renew": lambda lab, text: run_kubefab(lab, text, "nothing to renew"),
    "certs.renew.all": lambda lab, text: run_elsewhere(
        text, "test_kubernetes_certs_renew.py", 'cli("certs.renew", "--all", "--inventory", inventory)', **{"all": True}
    ),
    "certs.rotate-ca": check_rotate_ca,
    "etcd.restore.check": run_restore_check,
    "reset.dry": run_reset_dry,
    "node.remove.dry": run_node_remove_dry,
    "node.remove": check_node_remove,
    "lab.status": run_status,
    "lab.ssh": run_ssh,
    "host": run_host,
    "kubectl.raw": run_kubectl_raw,
    "kubectl.nodes": run_kubectl_nodes,
    "lab.up": check_lab_up,
    "lab.down": check_lab_down,
    "lab.add": check_lab_add,
}
SEQUENTIAL = ("deploy", "certs.renew")  # change hosts: one at a time, in this order, before the others
ON_ONE_THREAD = ("host", "kubectl.nodes")  # share lab-1's SSH connection


@pytest.fixture(scope="module")
def outcomes(lab: Lab) -> dict[str, Outcome]:
    """Every lab command of the docs, rewritten for the lab and run once; outcome by the docs' text."""
    jobs: dict[str, tuple[str, str]] = {}  # rewritten text -> (key, docs' text)
    for text, cmds in LAB.items():
        jobs.setdefault(rewrite(text, lab), (rule_for(cmds[0]).key, text))  # type: ignore[union-attr]
    ran: dict[str, Outcome] = {}

    def one(item: tuple[str, tuple[str, str]]) -> tuple[str, Outcome]:
        text, (key, _) = item
        try:
            return text, HANDLERS[key](lab, text)
        except Exception as exc:
            return text, Outcome(False, f"{type(exc).__name__}: {exc}")

    start = time.monotonic()
    ran.update(one(i) for key in SEQUENTIAL for i in jobs.items() if i[1][0] == key)  # deploys first
    serial = [i for i in jobs.items() if i[1][0] in ON_ONE_THREAD]
    parallel = [i for i in jobs.items() if i[1][0] not in (*SEQUENTIAL, *ON_ONE_THREAD)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        done = pool.submit(lambda: [one(i) for i in serial])
        ran.update(pool.map(one, parallel))
        ran.update(done.result())
    TIMINGS["docs: every lab command"] = time.monotonic() - start
    return {docs: ran[rewrite(docs, lab)] for docs in LAB}


@pytest.mark.parametrize("text", sorted(LAB))
def test_lab_command_runs(outcomes: dict[str, Outcome], text: str) -> None:
    where = ", ".join(c.where for c in LAB[text])
    assert outcomes[text].ok, f"{text}  ({where})\n{outcomes[text].detail}"
