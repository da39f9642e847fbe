"""Ansible inventories as kubeasz and kubespray write them: INI or YAML hosts files, plus the group_vars/ and
host_vars/ directories beside them. Pure reading: every variable keeps the file and line it came from.

Group names are read with '-' as '_' (older kubeasz and kubespray wrote kube-master, k8s-cluster), which is
what Ansible itself does with such names.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubefab.playbooks.importers.report import SourceError
from kubefab.playbooks.inventory import Loc, index_lines

_SECTION = re.compile(r"\[([^\[\]:\s]+)(?::([a-z]+))?\]")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Var:
    value: Any
    where: str  # "file:line"


@dataclass
class Group:
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Var] = field(default_factory=dict)


@dataclass
class Inventory:
    path: Path
    hosts: dict[str, dict[str, Var]] = field(default_factory=dict)  # in order of first appearance, own vars
    groups: dict[str, Group] = field(default_factory=dict)
    renamed_groups: dict[str, str] = field(default_factory=dict)  # as written -> as read

    def group(self, name: str) -> Group:
        normal = name.replace("-", "_")
        if normal != name:
            self.renamed_groups[name] = normal
        return self.groups.setdefault(normal, Group())

    def add_child(self, parent: Group, name: str) -> None:
        self.group(name)
        parent.children.append(name.replace("-", "_"))

    def add_host(self, name: str, group: Group | None, variables: dict[str, Var]) -> None:
        self.hosts.setdefault(name, {}).update(variables)
        if group is not None and name not in group.hosts:
            group.hosts.append(name)

    def members(self, name: str, seen: frozenset[str] = frozenset()) -> list[str]:
        """Hosts of a group and of its children (recursively), in order; a cycle of children ends there."""
        group = self.groups.get(name)
        if group is None or name in seen:
            return []
        found = list(group.hosts)
        for child in group.children:
            found += self.members(child, seen | {name})
        return list(dict.fromkeys(found))

    def host_vars(self, host: str) -> dict[str, Var]:
        """A host's variables as Ansible resolves them (simplified): all, then its groups, then its own."""
        merged = dict(self.groups["all"].vars) if "all" in self.groups else {}
        for name, group in self.groups.items():
            if name != "all" and host in self.members(name):
                merged |= group.vars
        return merged | self.hosts.get(host, {})


def read(path: Path) -> Inventory:
    """The inventory in `path` (YAML by its suffix, INI otherwise) with the group_vars/host_vars beside it."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(str(path), None, f"unreadable: {exc}") from None
    inv = parse_yaml(text, path) if path.suffix in (".yaml", ".yml") else parse_ini(text, path)
    read_var_dirs(inv)
    return inv


def parse_ini(text: str, path: Path) -> Inventory:
    inv = Inventory(path)
    file = str(path)
    section, kind = inv.group("ungrouped"), "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            header = _SECTION.match(line)
            rest = line[header.end() :].strip() if header else ""
            if header is None or (rest and rest[0] not in "#;") or header.group(2) not in (None, "vars", "children"):
                raise SourceError(
                    file,
                    number,
                    f"malformed section header {line!r}: expected [group], [group:vars] or [group:children]",
                )
            section, kind = inv.group(header.group(1)), header.group(2) or "hosts"
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise SourceError(file, number, f"{exc} in {line!r}") from None
        if kind == "children":
            if len(words) != 1:
                raise SourceError(file, number, f"expected one group name per line, found {line!r}")
            inv.add_child(section, words[0])
        elif kind == "vars":
            key, sep, value = line.partition("=")
            if not sep or not _VAR_NAME.fullmatch(key.strip()):
                raise SourceError(file, number, f"expected name=value, found {line!r}")
            section.vars[key.strip()] = Var(_ini_value(value, file, number), f"{file}:{number}")
        else:
            for name in host_range(words[0], file, number):
                inv.add_host(name, section, _host_vars(words[1:], file, number))
    return inv


_RANGE = re.compile(r"\[([^\[\]:]*):([^\[\]:]*)(?::(\d+))?\]")


def host_range(pattern: str, file: str, number: int | None) -> list[str]:
    """Ansible's host patterns: `node[1:3]` -> node1 node2 node3, `db[01:10:2]` keeps the leading zeros and steps
    by 2, `[a:c]` counts letters; several ranges in one name multiply."""
    match = _RANGE.search(pattern)
    if match is None:
        if "[" in pattern or "]" in pattern:
            raise SourceError(
                file, number, f"malformed host range {pattern!r}: expected name[START:END] or [START:END:STEP]"
            )
        return [pattern]
    first, last, step = match.group(1), match.group(2), int(match.group(3) or 1)
    if first.isdigit() and last.isdigit() and int(first) <= int(last) and step > 0:
        width = len(first) if first.startswith("0") else 0
        values = [str(n).zfill(width) for n in range(int(first), int(last) + 1, step)]
    elif len(first) == len(last) == 1 and first.isalpha() and last.isalpha() and first <= last and step > 0:
        values = [chr(c) for c in range(ord(first), ord(last) + 1, step)]
    else:
        raise SourceError(
            file, number, f"host range {match.group(0)!r} in {pattern!r}: expected [1:3], [01:10:2] or [a:c]"
        )
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [head + v + rest for v in values for rest in host_range(tail, file, number)]


def _host_vars(words: list[str], file: str, number: int) -> dict[str, Var]:
    found: dict[str, Var] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not _VAR_NAME.fullmatch(key):
            raise SourceError(file, number, f"expected name=value after the host name, found {word!r}")
        found[key] = Var(value, f"{file}:{number}")
    return found


def _ini_value(value: str, file: str, number: int) -> str:
    """`"calico"  # comment` -> calico: quotes and trailing comments go, as Ansible reads them."""
    try:
        return " ".join(shlex.split(value, comments=True))
    except ValueError as exc:
        raise SourceError(file, number, f"{exc} in {value.strip()!r}") from None


def parse_yaml(text: str, path: Path) -> Inventory:
    file = str(path)
    data, lines = _load_yaml(text, file)
    if not isinstance(data, dict):
        raise SourceError(file, 1, "expected a mapping of groups (all: {hosts: ..., children: ...})")
    inv = Inventory(path)
    for name, body in data.items():
        _yaml_group(inv, str(name), body, (name,), file, lines)
    return inv


def _yaml_group(inv: Inventory, name: str, body: Any, loc: Loc, file: str, lines: dict[Loc, int]) -> None:
    group = inv.group(name)
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise SourceError(
            file, lines.get(loc), f"group {name}: expected hosts, children or vars, found a {type(body).__name__}"
        )
    for key, value in body.items():
        at = (*loc, key)
        if key not in ("hosts", "children", "vars"):
            raise SourceError(
                file, lines.get(at), f"group {name}: unknown key {key!r} (expected hosts, children or vars)"
            )
        value = {} if value is None else value
        if not isinstance(value, dict):
            raise SourceError(
                file, lines.get(at), f"group {name}: {key} must be a mapping, found a {type(value).__name__}"
            )
        if key == "vars":
            group.vars |= _vars(value, at, file, lines)
        elif key == "hosts":
            for host, host_vars in value.items():
                if host_vars is not None and not isinstance(host_vars, dict):
                    raise SourceError(
                        file,
                        lines.get((*at, host)),
                        f"host {host}: expected a mapping of variables, found {host_vars!r}",
                    )
                for name in host_range(str(host), file, lines.get((*at, host))):
                    inv.add_host(name, group, _vars(host_vars or {}, (*at, host), file, lines))
        else:
            for child, child_body in value.items():
                inv.add_child(group, str(child))
                _yaml_group(inv, str(child), child_body, (*at, child), file, lines)


def _vars(values: dict, loc: Loc, file: str, lines: dict[Loc, int]) -> dict[str, Var]:
    return {str(k): Var(v, f"{file}:{lines.get((*loc, k), lines.get(loc, 1))}") for k, v in values.items()}


def _load_yaml(text: str, file: str) -> tuple[Any, dict[Loc, int]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SourceError(
            file, mark.line + 1 if mark else None, f"invalid YAML: {getattr(exc, 'problem', None) or exc}"
        ) from None
    lines: dict[Loc, int] = {}
    if root is not None:
        index_lines(root, (), lines, [])
    return data, lines


def read_var_dirs(inv: Inventory) -> None:
    """group_vars/<group>[.yml|.yaml|/*.yml] and host_vars/<host>[...] beside the inventory file."""
    for kind in ("group_vars", "host_vars"):
        base = inv.path.parent / kind
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir()):
            files = sorted(entry.iterdir()) if entry.is_dir() else [entry]
            name = entry.name if entry.is_dir() else entry.stem
            for f in filter(_is_yaml, files):
                values = read_vars(f)
                if kind == "group_vars":
                    inv.group(name).vars |= values
                elif name in inv.hosts:
                    inv.hosts[name] |= values


def _is_yaml(path: Path) -> bool:
    return path.is_file() and path.suffix in (".yml", ".yaml")


def read_vars(path: Path) -> dict[str, Var]:
    file = str(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(file, None, f"unreadable: {exc}") from None
    data, lines = _load_yaml(text, file)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SourceError(file, 1, f"expected a mapping of variables, found a {type(data).__name__}")
    return _vars(data, (), file, lines)
