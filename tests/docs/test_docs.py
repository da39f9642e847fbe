"""The operator's guide cannot drift from the code: every command it shows is run (tests/docs_commands.py says how),
every `kubefab` command and mention names a real task and real options, its YAML examples are valid inventories
and the messages troubleshooting.md quotes are the ones the code prints.

The offline commands run here for real, as `python -m kubefab.playbooks.cli` (the `kubefab` console script is the same
program), in a scratch directory holding copies of inventory/ and the Vagrantfile; the ones that need the internet
or a hypervisor run the stand-ins named in tests/docs_commands.py. Commands that need hosts are run by
tests/lab/test_deploy_docs.py. Traffic goes to loopback only."""

from __future__ import annotations

import ast
import copy
import datetime as dt
import functools
import http.server
import inspect
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from docs_commands import (
    DOC_MIRROR,
    IMPORT_SOURCES,
    LAB_TEST,
    ROOT,
    RULES,
    Command,
    commands,
    doc_files,
    fenced_blocks,
    rule_for,
    unique,
)
from invoke.parser import ParseError, Parser, ParserContext

from kubefab.pki import certs, keys
from kubefab.playbooks.components import releases as required
from kubefab.playbooks.inputs import stack_of
from kubefab.playbooks.inventory import load, validate_text
from kubefab.playbooks.tasks import deploy as deploy_tasks
from kubefab.playbooks.tasks import ns
from kubefab.playbooks.versions import cni_release

COMMANDS = commands()
UNIT = unique(COMMANDS, "unit")
EXAMPLE = ROOT / "inventory" / "example.yaml"
VAGRANT_VMS = ("k8s-1", "k8s-2", "k8s-3")


# -- every command is known, and names real tasks and options --------------------------------------------------


def test_the_docs_show_commands() -> None:
    pages = {c.file for c in COMMANDS}
    assert {"README.md", "docs/README.md", "docs/operations.md"} <= pages, pages


def test_every_command_has_a_way_to_be_exercised() -> None:
    unknown = [f"{c.where}: {c.text}" for c in COMMANDS if rule_for(c) is None]
    assert not unknown, (
        "commands no rule of tests/docs_commands.py exercises; add a rule and a handler:\n  " + "\n  ".join(unknown)
    )


def lab_handlers() -> set[str]:
    """The keys of HANDLERS in tests/lab/test_deploy_docs.py (read without importing it: it needs the lab)."""
    tree = ast.parse(LAB_TEST.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "HANDLERS" for t in targets) and isinstance(
                node.value, ast.Dict
            ):
                return {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    return set()


def test_every_rule_has_a_handler_in_its_module() -> None:
    assert {r.key for r in RULES if r.runner == "unit"} == set(HANDLERS)
    assert {r.key for r in RULES if r.runner == "lab"} == lab_handlers()


def parse_task(argv: list[str], strict: bool = True) -> dict[str, object]:
    """The task's arguments as `kubefab` would parse `argv` (without `kubefab`); raises on an unknown task or
    option. Not strict: only names are checked (prose may elide values)."""
    if argv[0] in ("--print-completion-script", "--complete"):  # invoke's completion options, kept by kubefab
        return {}
    if argv[0] in ("--help", "-h", "--list", "-l"):
        assert len(argv) == 1 or argv[1] in ns.task_names, f"no task {argv[1]!r}"
        return {}
    assert argv[0] in ns.task_names, f"no task {argv[0]!r}; tasks: {', '.join(sorted(ns.task_names))}"
    task = ns[argv[0]]
    if not strict:
        names = {n for a in task.get_arguments() for n in a.names}
        flags = [w.split("=", 1)[0].lstrip("-") for w in argv[1:] if w.startswith("--")]
        unknown = [f for f in flags if f not in names and f != "help"]
        assert not unknown, f"{argv[0]} has no option --{', --'.join(unknown)}"
        return {}
    result = Parser(contexts=[ParserContext(name=argv[0], args=task.get_arguments())]).parse_argv(argv)
    assert not result.unparsed, f"left over: {result.unparsed}"
    return {k: a.value for k, a in result[0].args.items()}


def inline_spans(path: Path) -> list[str]:
    """Inline code spans of a page outside fenced blocks (a span may wrap onto the next line)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", text)]


def test_kubefab_commands_and_mentions_name_real_tasks_and_options() -> None:
    problems = []
    for c in COMMANDS:
        if c.argv[0] == "kubefab":
            try:
                parse_task(c.argv[1:])
            except (AssertionError, ParseError) as exc:
                problems.append(f"{c.where}: {c.text}: {exc}")
    for path in doc_files():
        for span in inline_spans(path):
            words = span.split()
            if words[0] in ("kubefab", "fab") and len(words) > 1 and not words[1].startswith("-i"):
                try:
                    parse_task([w for w in words[1:] if not re.fullmatch(r"\[.*|.*\]|[A-Z]+", w)], strict=False)
                except AssertionError as exc:
                    problems.append(f"{path.relative_to(ROOT)}: `{span}`: {exc}")
    assert not problems, "\n".join(problems)


# -- running the offline commands -------------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    detail: str


@dataclass
class Workspace:
    """A scratch copy of what an operator has in the repository: inventory/ and the Vagrantfile."""

    root: Path
    mirror: str = ""
    env: dict[str, str] = field(default_factory=dict)
    locks: dict[str, threading.Lock] = field(default_factory=lambda: {"bundle": threading.Lock()})

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        if argv[0] == "kubefab":
            argv = [sys.executable, "-m", "kubefab.playbooks.cli", *argv[1:]]
        return subprocess.run(
            argv, cwd=self.root, capture_output=True, text=True, timeout=timeout, env={**self.env, **(env or {})}
        )


def shown(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


def expect(result: subprocess.CompletedProcess, *needles: str, code: int = 0) -> Outcome:
    missing = [n for n in needles if n not in result.stdout + result.stderr]
    ok = result.returncode == code and not missing
    return Outcome(ok, "" if ok else f"expected exit {code} and {missing}\n{shown(result)}")


def run_cp(ws: Workspace, cmd: Command) -> Outcome:
    result = ws.run(cmd.argv)
    target = ws.root / cmd.argv[-1]
    if result.returncode or not target.exists():
        return Outcome(False, shown(result))
    # The docs' next step: the operator names the cluster (inventory/clusters/mycluster/ in the commands that follow).
    target.write_text(target.read_text().replace("name: book", "name: mycluster", 1))
    return Outcome(True, "")


def run_kubefab(*needles: str) -> Callable[[Workspace, Command], Outcome]:
    return lambda ws, cmd: expect(ws.run(cmd.argv), *needles)


def or_json(handler: Callable[[Workspace, Command], Outcome]) -> Callable[[Workspace, Command], Outcome]:
    """With --json the same command prints one document whose verdict is `ok`: that is what is checked."""

    def run(ws: Workspace, cmd: Command) -> Outcome:
        if "--json" not in cmd.argv:
            return handler(ws, cmd)
        result = ws.run(cmd.argv)
        try:
            ok = result.returncode == 0 and json.loads(result.stdout)["ok"] is True
        except (ValueError, KeyError):
            ok = False
        return Outcome(ok, "" if ok else shown(result))

    return run


def run_kubeconfig(ws: Workspace, cmd: Command) -> Outcome:
    result = ws.run(cmd.argv)
    out = ws.root / cmd.argv[cmd.argv.index("--out") + 1]
    outcome = expect(result, "(0600)")
    if outcome.ok and not (stat.S_IMODE(out.stat().st_mode) == 0o600 and yaml.safe_load(out.read_text())["users"]):
        return Outcome(False, f"{out}: not a 0600 kubeconfig")
    return outcome


def run_inventory_check(ws: Workspace, cmd: Command) -> Outcome:
    """The example's layout gives the line docs/README.md quotes."""
    example = cmd.argv[-1] == "inventory/mycluster.yaml"
    return expect(
        ws.run(cmd.argv),
        "inventory OK: 3 hosts, 3 etcd members, 3 control plane, 2 lb, 3 nodes" if example else "inventory OK: ",
    )


def run_pki(ws: Workspace, cmd: Command) -> Outcome:
    result = ws.run(cmd.argv)
    if result.returncode == 0 and re.search(r"kept \d+, issued \d+", result.stdout):
        return Outcome(True, "")
    return Outcome(False, shown(result))


def run_import(ws: Workspace, cmd: Command) -> Outcome:
    argv = cmd.argv
    source = next((a for a in argv[2:] if not a.startswith("-") and argv[argv.index(a) - 1] != "--out"), None)
    if source not in IMPORT_SOURCES:
        return Outcome(False, f"source {source!r}: map it to a fixture in IMPORT_SOURCES (tests/docs_commands.py)")
    argv = [str(ROOT / IMPORT_SOURCES[source]) if a == source else a for a in argv]
    out = argv[argv.index("--out") + 1]
    result = ws.run(argv)
    if (ws.root / out).exists() and load(ws.root / out):
        return expect(result, f"{out}: valid")
    return Outcome(False, shown(result))


def run_tool(ws: Workspace, cmd: Command) -> Outcome:
    """openssl, grep, cat on what the earlier commands wrote."""
    result = ws.run(cmd.argv)
    ok = result.returncode == 0 and result.stdout.strip() != ""
    if ok and cmd.argv[:2] == ["openssl", "verify"]:
        ok = result.stdout.strip().endswith(": OK")
    return Outcome(ok, "" if ok else shown(result))


def vagrant_env(ws: Workspace) -> dict[str, str]:
    """Vagrant kept to a scratch home and dotfile directory, with no update checks (no network)."""
    return {
        "VAGRANT_HOME": str(ws.root / ".vagrant-home"),
        "VAGRANT_DOTFILE_PATH": str(ws.root / ".vagrant"),
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
    }


def run_vagrant_up(ws: Workspace, cmd: Command) -> Outcome:
    """Stand-in: no hypervisor here. `vagrant validate --ignore-provider` loads the same Vagrantfile and checks
    the machines `vagrant up` would create."""
    assert cmd.argv == ["vagrant", "up"], "only a plain `vagrant up` has a stand-in"
    if shutil.which("vagrant") is None:
        return Outcome(False, "vagrant is not installed (.ci/install installs it)")
    result = ws.run(["vagrant", "validate", "--ignore-provider"], vagrant_env(ws))
    return expect(result, "Vagrantfile validated successfully", *VAGRANT_VMS)


STUB_VAGRANT = """#!/bin/sh
# Stand-in for `vagrant ssh-config` with three libvirt VMs (no hypervisor runs in the tests).
[ "$1" = ssh-config ] || { echo "stub vagrant: only ssh-config" >&2; exit 1; }
for i in 1 2 3; do
  printf 'Host k8s-%s\\n  HostName 192.168.121.1%s\\n  User vagrant\\n  Port 22\\n' "$i" "$i"
  printf '  IdentityFile %s/.vagrant/machines/k8s-%s/libvirt/private_key\\n\\n' "$VAGRANT_CWD" "$i"
done
"""


def run_vagrant_inventory(ws: Workspace, cmd: Command) -> Outcome:
    """Stand-in: a stub `vagrant` first on PATH answers `ssh-config`; the task itself runs for real."""
    stub = ws.root / ".stub-bin"
    stub.mkdir(exist_ok=True)
    (stub / "vagrant").write_text(STUB_VAGRANT)
    (stub / "vagrant").chmod(0o755)
    result = ws.run(cmd.argv, {"PATH": f"{stub}:{ws.env['PATH']}"})
    outcome = expect(result, "inventory/vagrant.yaml: 3 VMs, VIP 192.168.56.100 on eth1")
    if not outcome.ok:
        return outcome
    cluster = load(ws.root / "inventory" / "vagrant.yaml")
    keys = [cluster.ssh_for(h).key for h in cluster.hosts]
    ips = [str(h.address) for h in cluster.hosts]
    ok = ips == ["192.168.56.11", "192.168.56.12", "192.168.56.13"] and all(
        k and k.endswith(f"/machines/{h.name}/libvirt/private_key") for k, h in zip(keys, cluster.hosts, strict=True)
    )
    return Outcome(ok, "" if ok else f"unexpected inventory: {ips} {keys}")


def run_bundle(ws: Workspace, cmd: Command) -> Outcome:
    """Stand-in: the real files need the internet. The same command fetches from a loopback mirror serving decoys
    at the upstream paths; every release file must be refused on its published checksum and removed."""
    argv = list(cmd.argv)
    if "--mirror" in argv:
        assert argv[argv.index("--mirror") + 1] == DOC_MIRROR, "the docs' mirror is DOC_MIRROR"
        argv[argv.index("--mirror") + 1] = ws.mirror
    else:
        argv += ["--mirror", ws.mirror]
    cluster = load(ws.root / argv[argv.index("--inventory") + 1])
    checked = [r for r in required(cluster, stack_of(cluster), "amd64") if r.digest]
    with ws.locks["bundle"]:
        shutil.rmtree(cluster.bundle_dir, ignore_errors=True)
        result = ws.run(argv, {"no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"})
        left = [r.bundle_path for r in checked if (cluster.bundle_dir / r.bundle_path).exists()]
    needles = [f"fetching {ws.mirror.rstrip('/')}/" + r.url.split("://", 1)[1] for r in checked]
    needles += [f"{r.url}: {r.digest[0]} mismatch (expected {r.digest[1]}); file removed" for r in checked if r.digest]
    outcome = expect(result, *needles, code=1)
    if outcome.ok and left:
        return Outcome(False, f"refused files were kept: {left}")
    return outcome


def run_bundle_from_source(ws: Workspace, cmd: Command) -> Outcome:
    """Equivalence (see the rule): the option exists, and the task builds through source.fill_bundle."""
    load(ws.root / cmd.argv[cmd.argv.index("--inventory") + 1])  # the inventory the docs name is valid
    result = ws.run(["kubefab", "--help", "bundle"])
    calls = "source.fill_bundle(" in inspect.getsource(deploy_tasks.fetch_bundle)
    outcome = expect(result, "--from-source")
    return outcome if calls else Outcome(False, "`kubefab bundle` no longer calls source.fill_bundle")


HANDLERS: dict[str, tuple[int, Callable[[Workspace, Command], Outcome]]] = {
    # key: (stage, handler); stages run in order, the commands of one stage in parallel
    "cp": (0, run_cp),
    "list": (1, run_kubefab("deploy", "lab.up", "import-inventory")),
    "completion": (1, run_kubefab("complete -F _complete_kubefab", "kubefab --complete")),
    "init": (1, run_kubefab("wrote inventory/starter.yaml: 3 hosts")),
    "vagrant.up": (1, run_vagrant_up),
    "vagrant.inventory": (1, run_vagrant_inventory),
    "import-inventory": (1, run_import),
    "pki": (1, run_pki),
    "bundle": (2, run_bundle),
    "bundle.source": (2, run_bundle_from_source),
    "inventory.check": (2, or_json(run_inventory_check)),
    "certs.check": (2, or_json(run_kubefab("certificates ok"))),
    "kubeconfig": (2, run_kubeconfig),
    "render": (2, run_kubefab("files written")),
    "audit": (2, or_json(run_kubefab("checks passed"))),
    "openssl": (2, run_tool),
    "grep": (2, run_tool),
    "cat": (3, run_tool),
}


def decoys(root: Path, inventories: list[Path]) -> None:
    """Files at the upstream paths of every release file the inventories need, with the wrong content."""
    for inventory in inventories:
        cluster = load(inventory)
        stack = stack_of(cluster)
        for r in [*required(cluster, stack, "amd64"), cni_release(cluster.cni, stack)]:
            path = root / r.url.split("://", 1)[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"a decoy: not the published file\n")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every offline command of the docs run once, stage by stage; outcome by command text."""
    root = tmp_path_factory.mktemp("operator")
    (root / "inventory").mkdir()
    for name in ("example.yaml", "vagrant.yaml"):
        shutil.copy(ROOT / "inventory" / name, root / "inventory" / name)
    shutil.copy(ROOT / "Vagrantfile", root / "Vagrantfile")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "KUBEFAB_INVENTORY"}
    env |= {"COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    ws = Workspace(root, env=env)

    served = tmp_path_factory.mktemp("mirror")
    mycluster = yaml.safe_load(EXAMPLE.read_text()) | {"name": "mycluster"}
    (served / "mycluster.yaml").write_text(yaml.safe_dump(mycluster))
    decoys(served / "files", [served / "mycluster.yaml", ROOT / "inventory" / "vagrant.yaml"])
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served / "files"))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ws.mirror = f"http://127.0.0.1:{server.server_address[1]}/"

    found: dict[str, Outcome] = {}
    try:
        jobs = {text: cmds[0] for text, cmds in UNIT.items()}
        for stage in sorted({s for s, _ in HANDLERS.values()}):
            batch = [c for c in jobs.values() if HANDLERS[rule_for(c).key][0] == stage]  # type: ignore[union-attr]

            def one(c: Command) -> tuple[str, Outcome]:
                try:
                    return c.text, HANDLERS[rule_for(c).key][1](ws, c)  # type: ignore[union-attr]
                except Exception as exc:  # reported against the command, not as an error of the fixture
                    return c.text, Outcome(False, f"{type(exc).__name__}: {exc}")

            with ThreadPoolExecutor(max_workers=4) as pool:
                found.update(pool.map(one, batch))
    finally:
        server.shutdown()
        server.server_close()
    return found


@pytest.mark.parametrize("text", sorted(UNIT))
def test_offline_command_runs(outcomes: dict[str, Outcome], text: str) -> None:
    outcome = outcomes[text]
    where = ", ".join(c.where for c in UNIT[text])
    assert outcome.ok, f"{text}  ({where})\n{outcome.detail}"


# -- YAML examples, the sample problem, the quoted messages -----------------------------------------------------


def merged(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _imported_cas(doc: dict, inventory: Path) -> None:
    """The CA files an example imports, created where it names them (each a sound self-signed CA)."""
    now = dt.datetime.now(dt.UTC)
    for pair in ((doc.get("certificates") or {}).get("import_ca") or {}).values():
        key = keys.new_key("ecdsa-p256")
        cert = certs.new_ca("docs", key, 3650, now).public_bytes(serialization.Encoding.PEM)
        for name, content in (("cert", cert), ("key", keys.key_pem(key))):
            target = inventory.parent / pair[name]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)


def test_yaml_examples_are_valid_inventories(tmp_path: Path) -> None:
    """A complete example (with `hosts` and `name`) alone, a fragment laid over inventory/example.yaml."""
    example = yaml.safe_load(EXAMPLE.read_text())
    checked = 0
    for path in sorted((ROOT / "docs").glob("*.md")):
        for block in fenced_blocks(path, "yaml"):
            fragment = yaml.safe_load("\n".join(line for _, line in block))
            doc = fragment if {"name", "hosts"} <= set(fragment) else merged(example, fragment)
            inventory = tmp_path / f"{path.stem}-{block[0][0]}" / "inventory.yaml"
            _imported_cas(doc, inventory)
            verdict = validate_text(yaml.safe_dump(doc), inventory)
            errors = [str(p) for p in verdict.problems if p.severity == "error"]
            assert verdict.ok, f"{path.name}:{block[0][0]}: {errors}"
            checked += 1
    assert checked >= 5


def test_the_sample_problem_is_what_kubefab_prints() -> None:
    """inventory.md shows the report of a typo in network.service_cidr of the copied example."""
    text = EXAMPLE.read_text().replace("name: book", "name: mycluster", 1).replace("service_cidr:", "service_cdir:", 1)
    verdict = validate_text(text, Path("inventory/mycluster.yaml"))
    printed = [f"{p.severity}: {p}" for p in verdict.problems]
    printed.append(f"inventory/mycluster.yaml: {len(printed)} problem(s); nothing was changed")
    blocks = fenced_blocks(ROOT / "docs" / "inventory.md", "text")
    assert any([line for _, line in b] == printed for b in blocks), printed


def product_strings() -> list[str]:
    """Every string literal of the product, f-string fields as \\x00, rich markup removed, one entry per line."""
    out: list[str] = []
    for path in [*sorted((ROOT / "playbooks").rglob("*.py")), *sorted((ROOT / "pki").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "\x00" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            text = re.sub(r"\[/?[a-z \x00]*\]", "", text)
            out += [line.strip() for line in text.split("\n") if len(re.findall(r"\w", line.replace("\x00", ""))) >= 3]
    return sorted(set(out))


PLACEHOLDERS = re.compile(r"[^\w<]*(<[^>]*>[^\w<]*)*")


class Messages:
    """Whether a line of the docs is a line the code prints: some string of the code matches it with its fields
    filled by the docs' <placeholders>, example values (one word), or other strings of the code."""

    def __init__(self) -> None:
        self.lines = product_strings()
        self._known: dict[tuple[str, int], bool] = {}  # the same spans come back at every depth

    def fill(self, text: str, depth: int) -> bool:
        return (
            PLACEHOLDERS.fullmatch(text) is not None
            or re.fullmatch(r"\S+", text) is not None
            or (depth > 0 and self.known(text, depth - 1))
        )

    def known(self, line: str, depth: int = 3) -> bool:
        line = line.strip()
        if PLACEHOLDERS.fullmatch(line):
            return True
        if (line, depth) not in self._known:
            self._known[line, depth] = any(
                self._matches(pattern.split("\x00"), line, depth)
                for pattern in self.lines
                if all(part in line for part in pattern.split("\x00"))
            )
        return self._known[line, depth]

    def _matches(self, parts: list[str], line: str, depth: int) -> bool:
        """parts[0] <field> parts[1] <field> ...: somewhere in the line, the rest of it placeholders."""

        def at(i: int, pos: int) -> bool:  # parts[i] starts at pos
            if not line.startswith(parts[i], pos):
                return False
            end = pos + len(parts[i])
            if i == len(parts) - 1:
                return PLACEHOLDERS.fullmatch(line[end:]) is not None
            nxt = parts[i + 1]
            starts = [m.start() for m in re.finditer(re.escape(nxt), line[end:])] if nxt else range(len(line) - end + 1)
            return any(self.fill(line[end : end + s], depth) and at(i + 1, end + s) for s in starts)

        first = parts[0]
        positions = [m.start() for m in re.finditer(re.escape(first), line)] if first else [0]
        return any(PLACEHOLDERS.fullmatch(line[:p]) is not None and at(0, p) for p in positions)


def test_troubleshooting_quotes_the_messages_the_code_prints() -> None:
    page = ROOT / "docs" / "troubleshooting.md"
    quoted = [(n, line) for block in fenced_blocks(page, "text") for n, line in block if line.strip()]
    quoted += [
        (0, span)
        for span in inline_spans(page)
        if len(span.split()) >= 3
        and span.split()[0] not in ("kubefab", "fab", "sudo", "kubectl", "vagrant", "openssl", "ip")
    ]
    messages = Messages()
    unknown = [f"troubleshooting.md:{n}: {line}" for n, line in quoted if not messages.known(line)]
    assert len(quoted) > 40
    assert not unknown, "not printed by the code (reworded?):\n" + "\n".join(unknown)


def test_a_reworded_message_is_caught() -> None:
    messages = Messages()
    assert messages.known("deploy stopped: phase <phase> failed; later phases did not run")
    assert messages.known("<host>: gather facts failed")
    assert not messages.known("deploy halted: phase <phase> failed; later phases did not run")
    assert not messages.known("the bundle is not ready; no hosts were touched:")


def test_commands_are_one_per_line() -> None:
    """No pipelines, continuations or shell control in the docs' commands: each line is one command to run."""
    bad = [
        f"{c.where}: {c.text}"
        for c in COMMANDS
        if c.text.endswith("\\") or any(w in ("|", "&&", ";", ">", "||") for w in shlex.split(c.text))
    ]
    assert not bad, bad
