"""The commands the operator's guide shows, and how the tests exercise each one: the one place that says so.

Every line of a ```bash block in docs/*.md and README.md (except README's first block, the quick start that
.ci/run itself runs) is a command. `rule_for` classifies it by its first words; a command no rule matches
fails tests/unit/test_docs.py, so a new command in the docs needs a way to be exercised first.

Rules say where a command runs:
- "unit": tests/docs/test_docs.py runs it for real (`kubefab` as `python -m kubefab.playbooks.cli`, the same program)
  in a scratch directory holding copies of inventory/ and the Vagrantfile, or runs the stand-in named in `how`
  when the real thing needs the internet or a hypervisor;
- "lab": tests/lab/test_deploy_docs.py runs it against the session's lab hosts (the lab inventory stands for
  the docs' inventories, lab hosts for their hosts), or checks the equivalence named in `how`.
Each rule's `key` is a handler in the module that runs it (HANDLERS there); tests/unit/test_docs.py checks that
both modules have a handler for every rule of theirs.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
LAB_TEST = ROOT / "tests" / "lab" / "test_deploy_docs.py"

# The inventories and cluster directories the docs name, as an operator would have them.
REAL_INVENTORY = "inventory/mycluster.yaml"  # a copy of inventory/example.yaml, `name: mycluster`
VAGRANT_INVENTORY = "inventory/vagrant.yaml"
LAB_INVENTORY = "/var/lib/kubefab/lab/inventory.yaml"  # what `kubefab lab.up` writes (default lab directory)
INVENTORIES = (REAL_INVENTORY, VAGRANT_INVENTORY, LAB_INVENTORY)
CLUSTER_DIRS = ("inventory/clusters/mycluster", "inventory/clusters/vagrant", "/var/lib/kubefab/lab/cluster")

# Sources of `kubefab import-inventory` in the docs -> the fixtures written for the importer's tests.
IMPORT_SOURCES = {
    "/etc/kubeasz/clusters/k8s-prod/hosts": "tests/unit/fixtures/import/kubeasz/k8s-prod/hosts",
    "~/kubespray/inventory/mycluster": "tests/unit/fixtures/import/kubespray/mycluster",
}
# `--mirror` in the docs -> replaced by a loopback http.server in the test.
DOC_MIRROR = "http://mirror.example.internal/kube"


@dataclass(frozen=True)
class Command:
    text: str  # as typed, without a trailing `# comment`
    file: str  # relative to the repository
    line: int

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Rule:
    prefix: tuple[str, ...]  # the command's first words
    key: str  # the handler's name in the module that runs it
    runner: Literal["unit", "lab"]
    how: str  # what the test does, said plainly
    pattern: str | None = None  # when set, the whole command must match it (re.fullmatch)


RULES: tuple[Rule, ...] = (
    # -- on the operator's machine, offline: run for real by tests/unit/test_docs.py ------------------------
    Rule(("kubefab", "--list"), "list", "unit", "run"),
    Rule(
        ("kubefab", "--print-completion-script"),
        "completion",
        "unit",
        "run; asserts the script registers a completion function for kubefab",
    ),
    Rule(("cp",), "cp", "unit", "run in the scratch directory (then `name: mycluster` is set, as the docs say)"),
    Rule(("kubefab", "inventory.check"), "inventory.check", "unit", "run"),
    Rule(("kubefab", "init"), "init", "unit", "run in the scratch directory; asserts it wrote the file"),
    Rule(("kubefab", "pki"), "pki", "unit", "run"),
    Rule(("kubefab", "certs.check"), "certs.check", "unit", "run after `kubefab pki`"),
    Rule(
        ("kubefab", "kubeconfig"),
        "kubeconfig",
        "unit",
        "run after `kubefab pki`; asserts the file it names was written 0600 and holds a kubeconfig",
    ),
    Rule(("kubefab", "render"), "render", "unit", "run"),
    Rule(("kubefab", "audit"), "audit", "unit", "run"),
    Rule(
        ("kubefab", "import-inventory"),
        "import-inventory",
        "unit",
        "run on the importer's test fixtures (IMPORT_SOURCES)",
    ),
    Rule(("openssl",), "openssl", "unit", "run on the files `kubefab pki` generated"),
    Rule(("grep",), "grep", "unit", "run on the files `kubefab pki` generated"),
    Rule(("cat",), "cat", "unit", "run on the tree `kubefab render` wrote"),
    # -- stand-ins: the real thing needs the internet or a hypervisor ----------------------------------------
    Rule(
        ("kubefab", "bundle"),
        "bundle",
        "unit",
        "stand-in: run with --mirror set to a loopback http.server serving decoy files in the upstream layout; "
        "asserts every release file is refused on its checksum and removed (the real files need the internet)",
    ),
    Rule(
        ("kubefab", "bundle"),
        "bundle.source",
        "unit",
        "equivalence: a real build takes minutes, so the test checks that `kubefab bundle` takes --from-source and "
        "hands the inventory's release files to source.fill_bundle; the same build runs for real in "
        "`.ci/install` (`kubefab lab.bundle`) and the lab fixture, for the lab's inventory",
        pattern=r"kubefab bundle .*--from-source.*",
    ),
    Rule(
        ("kubefab", "vagrant.inventory"),
        "vagrant.inventory",
        "unit",
        "stand-in: run with a stub `vagrant` first on PATH printing `vagrant ssh-config` for the three VMs "
        "(no VM runs here); asserts the inventory written is valid and matches the Vagrantfile",
    ),
    Rule(
        ("vagrant", "up"),
        "vagrant.up",
        "unit",
        "stand-in: `vagrant validate --ignore-provider` (no hypervisor here): the Vagrantfile the VMs come from",
    ),
    # -- against hosts: run by tests/lab/test_deploy_docs.py on the lab ---------------------------------------
    Rule(
        ("kubefab", "lab.up"),
        "lab.up",
        "lab",
        "equivalence: parses to the arguments the session lab fixture passes to lifecycle.up (3 hosts, default "
        "subnet and bridge), which is what `lab.up` calls; running it would replace the session's lab",
    ),
    Rule(
        ("kubefab", "lab.down"),
        "lab.down",
        "lab",
        "equivalence: lifecycle.down, run by the session fixture at its end (test_lab_teardown.py checks it)",
    ),
    Rule(
        ("kubefab", "lab.add"),
        "lab.add",
        "lab",
        "equivalence: parses to the one host tests/lab/test_membership.py passes to lifecycle.add, which is what "
        "`lab.add` calls (that test then deploys and checks it joined); running it here would grow the session's lab",
    ),
    Rule(("kubefab", "lab.status"), "lab.status", "lab", "run"),
    Rule(("kubefab", "lab.ssh"), "lab.ssh", "lab", "run"),
    Rule(("kubefab", "deploy"), "deploy", "lab", "run with the lab inventory"),
    Rule(("kubefab", "plan"), "plan", "lab", "run with the lab inventory"),
    Rule(("kubefab", "verify"), "verify", "lab", "run with the lab inventory"),
    Rule(("kubefab", "etcd.backup"), "etcd.backup", "lab", "run with the lab inventory"),
    Rule(("kubefab", "certs.renew"), "certs.renew", "lab", "run with the lab inventory: it must find nothing due"),
    Rule(
        ("kubefab", "certs.renew"),
        "certs.renew.all",
        "lab",
        "equivalence: parses to --all, which tests/lab/test_kubernetes_certs_renew.py runs with the lab inventory "
        "under an API probe through the VIP; running it here as well would renew every leaf twice",
        pattern=r"kubefab certs\.renew .*--all.*",
    ),
    Rule(
        ("kubefab", "certs.rotate-ca"),
        "certs.rotate-ca",
        "lab",
        "equivalence: parses, its --ca names accepted for the lab's inventory; "
        "tests/lab/test_kubernetes_ca_rotation.py runs `certs.rotate-ca --inventory F` (all three CAs) under an API "
        "probe through the VIP; running it here would rotate the session's CAs again",
    ),
    Rule(
        ("kubefab", "etcd.restore"),
        "etcd.restore.check",
        "lab",
        "run with the lab inventory on the newest snapshot in the lab's backups/ (taken first if there is none)",
        pattern=r"kubefab etcd\.restore .*--check.*",
    ),
    Rule(
        ("kubefab", "upgrade"),
        "upgrade",
        "lab",
        "run with the lab inventory, which the lab runs already: asserts `nothing to upgrade` (the upgrade itself "
        "is tests/lab/test_upgrade.py, from the previous minor)",
    ),
    Rule(
        ("kubefab", "reset"),
        "reset.dry",
        "lab",
        "run with the lab inventory, without --yes: asserts it lists what it would remove and exits 2 (the reset "
        "itself is tests/lab/test_reset.py)",
        pattern=r"kubefab reset(?!.*--yes).*",
    ),
    Rule(
        ("kubefab", "node.remove"),
        "node.remove.dry",
        "lab",
        "run with the lab inventory, without --yes: asserts it exits 2 with nothing changed (the inventory's text "
        "the same), listing the steps or the refusal (the removal itself is tests/lab/test_membership.py)",
        pattern=r"kubefab node\.remove(?!.*--yes).*",
    ),
    Rule(
        ("kubefab", "node.remove"),
        "node.remove",
        "lab",
        "equivalence: parses to what tests/lab/test_membership.py runs (`node.remove HOST --inventory F --yes`) on "
        "the lab's first host; running it here would shrink the session's lab",
        pattern=r"kubefab node\.remove .*--yes.*",
    ),
    Rule(
        ("kubefab", "certs.check"),
        "certs.check.hosts",
        "lab",
        "run with the lab inventory; asserts every certificate on the lab hosts is ok",
        pattern=r"kubefab certs\.check .*--hosts.*",
    ),
    Rule(
        ("kubectl",),
        "kubectl.raw",
        "lab",
        "run on this machine with the lab's admin kubeconfig",
        pattern=r"kubectl --kubeconfig \S+ get --raw /\S+",
    ),
    Rule(
        ("kubectl",),
        "kubectl.nodes",
        "lab",
        "run on lab-1 with the cluster's own kubectl and its admin kubeconfig (through the VIP, as the docs' "
        "path); asserts every lab host is listed",
        pattern=r"kubectl --kubeconfig \S+ get nodes",
    ),
    Rule(("sudo",), "host", "lab", "typed on a host: run on lab-1 as the sudo user, addresses and names mapped"),
    Rule(("ip",), "host", "lab", "typed on a host: run on lab-1, addresses and interface mapped"),
)


def rule_for(command: Command) -> Rule | None:
    """The rule with the longest prefix matching the command's first words (and its pattern, if any)."""
    argv = command.argv
    found = [
        r
        for r in RULES
        if tuple(argv[: len(r.prefix)]) == r.prefix and (r.pattern is None or re.fullmatch(r.pattern, command.text))
    ]
    # A rule with a pattern is the narrower one: it wins over one with the same prefix.
    return max(found, key=lambda r: (len(r.prefix), r.pattern is not None), default=None)


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def fenced_blocks(path: Path, language: str) -> list[list[tuple[int, str]]]:
    """The ```<language> blocks of a Markdown file: (line number, line) for each line inside."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if current is None and stripped.startswith("```") and stripped[3:].strip() == language:
            current = []
        elif current is not None and stripped.startswith("```"):
            blocks.append(current)
            current = None
        elif current is not None:
            current.append((number, line))
    return blocks


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` after whitespace, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def commands() -> list[Command]:
    """Every command line of the docs, in order of appearance."""
    out = []
    for path in doc_files():
        blocks = fenced_blocks(path, "bash")
        if path == README:
            blocks = blocks[1:]
        for block in blocks:
            for number, line in block:
                text = strip_comment(line).strip()
                if text:
                    out.append(Command(text, str(path.relative_to(ROOT)), number))
    return out


def unique(cmds: list[Command], runner: str) -> dict[str, list[Command]]:
    """Commands of one runner by text (the same command shown on several pages is run once)."""
    out: dict[str, list[Command]] = {}
    for c in cmds:
        rule = rule_for(c)
        if rule is not None and rule.runner == runner:
            out.setdefault(c.text, []).append(c)
    return out
