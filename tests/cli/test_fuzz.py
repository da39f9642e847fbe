"""The whole CLI against mutated inventories: no input gives a traceback, and an inventory `inventory.check`
refuses makes every other task stop before writing anything, local or remote.

Mutants are drawn from a fixed seed (reproducible: the failing case's number and text are in the message):
leaves replaced by hostile or careless values, keys dropped or added, hosts duplicated, the YAML text cut or
spliced. Tasks run in this process (`program.run`, as `kubefab` does); `plan` gets a test double for SSH that
refuses every connection, since no host here may be contacted."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import yaml

from kubefab.playbooks import cli
from kubefab.playbooks.remote import StepFailed
from tests.conftest import EXAMPLE

SEED = 20261202
MUTANTS = 240
# The example inventory, and the same with every optional section filled in, so mutations reach them too.
PLAIN = yaml.safe_load(EXAMPLE.read_text())
FULL = copy.deepcopy(PLAIN)
FULL["api"] |= {"extra_sans": ["api.example.lan", "10.1.2.3"], "token_users": [{"name": "ops", "groups": ["g"]}]}
FULL["network"] |= {"upstream_dns": ["10.0.0.53"]}
FULL["registry"] = {
    "url": "https://reg.example.lan:5000",
    "mirrors": {"docker.io": ["https://mirror.example.lan/v2"]},
    "pause_image": "reg.example.lan:5000/pause:3.10",
}
FULL["versions"] = {"etcd": "3.6.5", "coredns": "1.12.1"}
HOSTILE = [
    "",
    "x\n",
    "k8s-1\n",
    "../../../../tmp/x",
    '"; touch /tmp/pwned; "',
    "%n%s",
    "${HOME}",
    "a\x00b",
    "\u0665.\u0665",
    "é",
    "*",
    "- x",
    "{a: b}",
    "0.0.0.0",
    "127.0.0.1",
    "255.255.255.255",
    "10.0.0.0/8",
    "::1",
    "https://x\n[host]",
    "x" * 5000,
    10**30,
    -1,
    0,
    65536,
    True,
    False,
    None,
    1.5,
    [],
    {},
    ["a", {"b": None}],
    {"nested": {"deeper": [1, 2]}},
]
TASKS = (
    ["inventory.check"],
    ["render", "--out", "{out}"],
    ["pki"],
    ["plan"],
    ["audit"],
)


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _set(data: dict, path: tuple, value: object) -> None:
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _drop(data: dict, path: tuple) -> None:
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]


def mutant(rng: random.Random, base: dict, tmp: Path) -> str:
    data = copy.deepcopy(base)
    for _ in range(rng.choice((1, 1, 2, 3))):
        paths = _paths(data)
        kind = rng.choice(("replace", "replace", "replace", "drop", "add", "hosts"))
        path = rng.choice(paths) if paths else ()
        if kind == "replace" and path:
            _set(data, path, copy.deepcopy(rng.choice(HOSTILE)))
        elif kind == "drop" and path:
            _drop(data, path)
        elif kind == "add":
            data[rng.choice(("extra", "Name", "hosts_", "api"))] = rng.choice(HOSTILE)
        elif kind == "hosts" and isinstance(data.get("hosts"), list) and data["hosts"]:
            data["hosts"] = data["hosts"] * rng.choice((0, 2)) or []
    # Where the tasks write stays under this case's directory, whatever the mutation did to these fields.
    if isinstance(data, dict):
        data["cluster_dir"], data["bundle"] = str(tmp / "cluster"), str(tmp / "bundle")
    text = yaml.dump(data, Dumper=_NoAliases, sort_keys=False, allow_unicode=True)
    cut = rng.random()
    if cut < 0.1:
        text = text[: rng.randrange(len(text))]
    elif cut < 0.2:
        at = rng.randrange(len(text))
        text = text[:at] + rng.choice(("\t", ":", "&a ", "*a", "- ", "{", "'", "!!binary ")) + text[at:]
    return text


class RefusingRemote:
    """Test double for playbooks.remote.Remote: every host refuses the connection, as an unreachable one does."""

    def __init__(self, cluster, host, *args, **kwargs) -> None:
        self.name = host.name

    def run(self, step: str, command: str, **kwargs):
        raise StepFailed(self.name, step, command, "connection refused (test double: no host is contacted)")

    def put(self, *args, **kwargs):
        raise StepFailed(self.name, "upload", "sftp", "connection refused (test double)")

    def close(self) -> None:
        pass


def run(argv: list[str]) -> int:
    try:
        cli.program.run(["kubefab", *argv])
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


@pytest.mark.parametrize("case", range(MUTANTS))
def test_no_traceback_and_nothing_written_when_refused(case: int, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("kubefab.playbooks.tasks.deploy.Remote", RefusingRemote)
    monkeypatch.chdir(tmp_path)
    rng = random.Random(SEED * 1000 + case)
    text = mutant(rng, FULL if case % 2 else PLAIN, tmp_path)
    inventory = tmp_path / "cluster.yaml"
    inventory.write_text(text)
    shown = f"case {case}:\n{text[:2000]}"
    codes = {}
    for task in TASKS:
        argv = [a.format(out=tmp_path / "out") for a in task]
        codes[task[0]] = run([*argv, "--inventory", str(inventory)])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, f"{task[0]}: {shown}\n{err}"
        assert codes[task[0]] in (0, 1, 2), f"{task[0]} exited {codes[task[0]]}: {shown}\n{err}"
        if task[0] == "inventory.check" and codes[task[0]] != 0:
            assert err.strip() or out.strip(), f"refused without a word: {shown}"
    if codes["inventory.check"] != 0:
        written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p != inventory)
        assert written == [], f"refused inventory, yet the tasks wrote {written[:5]}: {shown}"
