"""Read an inventory file into a validated `Cluster`, or report every problem in it at once.

Nothing touches a host before this has passed. Problems carry the file, the line, the host and the
field, so `fab inventory.check` output can be acted on directly.
"""

from __future__ import annotations

import copy
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kubefab.playbooks import local_checks
from kubefab.playbooks.checks import check
from kubefab.playbooks.findings import Finding
from kubefab.playbooks.model import ROLES, Cluster
from kubefab.playbooks.problems import InventoryError, Problem

Loc = tuple[str | int, ...]

ENV_VAR = "KUBEFAB_INVENTORY"
MAX_BYTES = 1 << 20  # an inventory of 500 hosts is ~50 KiB
MAX_DEPTH = 16
HOST_REQUIRED = ("name", "ip", "roles")
_PRINTABLE = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)  # shown as it is; anything else in repr()


@dataclass
class Verdict:
    path: Path
    cluster: Cluster | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.cluster is not None and not any(p.severity == "error" for p in self.problems)


def load(path: str | Path) -> Cluster:
    """The cluster described by `path`; raises InventoryError listing every error."""
    verdict = validate(path)
    if not verdict.ok:
        raise InventoryError(verdict.problems)
    assert verdict.cluster is not None
    return verdict.cluster


def validate(path: str | Path) -> Verdict:
    path = Path(path)
    name = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
        text = raw.decode()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Verdict(path, None, [Problem(name, "(file)", f"unreadable: {exc}", "a readable YAML file")])
    return validate_text(text, path)


def validate_text(text: str, path: Path) -> Verdict:
    name = str(path)
    if len(text) > MAX_BYTES:
        return Verdict(path, None, [Problem(name, "(file)", "more than 1 MiB", "an inventory of at most 1 MiB")])
    try:
        root, data = _parse(text)
    except _Refused as exc:
        return Verdict(path, None, [Problem(name, "(syntax)", exc.found, exc.expected, line=exc.line)])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        return Verdict(path, None, [Problem(name, "(syntax)", f"invalid YAML: {reason}", "valid YAML", line=line)])
    lines: dict[Loc, int] = {}
    duplicates: list[Loc] = []
    if root is not None:
        index_lines(root, (), lines, duplicates)
    problems = [
        Problem(name, _dotted(loc), "a key given twice", "each key once", _host(data, loc), lines.get(loc))
        for loc in duplicates
    ]
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        return Verdict(path, None, [*problems, Problem(name, "(document)", found, "a mapping of cluster settings")])
    try:
        cluster = Cluster.model_validate({**data, "source": path})
    except ValidationError as exc:
        errors = _first_causes(exc.errors())
        problems += [_from_pydantic(err, data, name, lines) for err in errors]
        partial, gone, index = _salvage(data, path, [_clean_loc(e["loc"]) for e in errors])
        if partial is not None:
            # Every problem at once: the cross-field rules run on what did parse, leaving out the rules
            # about fields already reported broken (their defaults stood in for them).
            for f in [*check(partial), *local_checks.check(partial)]:
                loc = _original(f.field, index)
                if not _hidden(loc, gone):
                    problems.append(_from_finding(f, loc, data, name, lines))
        return Verdict(path, None, problems)
    for f in [*check(cluster), *local_checks.check(cluster)]:
        problems.append(_from_finding(f, f.field, data, name, lines))
    return Verdict(path, cluster, problems)


def _first_causes(errors: list[Any]) -> list[Any]:
    """Leave out "too short" about a list whose items were already reported (pydantic counts only the valid
    ones)."""
    locs = [_clean_loc(e["loc"]) for e in errors]
    return [
        e
        for e, loc in zip(errors, locs, strict=True)
        if e["type"] != "too_short" or not any(len(o) > len(loc) and o[: len(loc)] == loc for o in locs)
    ]


def _from_finding(f: Finding, loc: Loc, data: dict, name: str, lines: dict[Loc, int]) -> Problem:
    return Problem(
        name,
        _dotted(loc),
        f.detail,
        f.expected,
        _host(data, loc),
        _line(lines, loc),
        "error" if f.status == "fail" else "warning",
    )


def _salvage(data: dict, path: Path, broken: list[Loc]) -> tuple[Cluster | None, list[Loc], list[int]]:
    """The cluster without its broken fields (each left to its default; a host whose name, ip or roles is
    broken left out), the locations it left out, and the original index of each host kept; None when
    nothing usable is left."""
    data = copy.deepcopy(data)
    hosts = data["hosts"] if isinstance(data.get("hosts"), list) else []
    index = list(range(len(hosts)))
    gone: list[Loc] = []
    for _ in range(4):
        drop_hosts = set()
        for loc in broken:
            if _is_host(loc) and (len(loc) == 2 or loc[2] in HOST_REQUIRED):
                drop_hosts.add(loc[1])
                gone.append(loc[:2])
            else:
                _drop(data, (loc[0], index.index(loc[1]), *loc[2:]) if _is_host(loc) else loc)
                gone.append(loc)
        keep = [i for i, original in enumerate(index) if original not in drop_hosts]
        hosts[:] = [hosts[i] for i in keep]
        index = [index[i] for i in keep]
        try:
            return Cluster.model_validate({**data, "source": path}), gone, index
        except ValidationError as exc:
            # Locations are relative to what is left: hosts are named by their original index.
            broken = [_original(_clean_loc(e["loc"]), index) for e in exc.errors()]
            if any(not _is_host(loc) and loc[:1] in (("name",), ("kubernetes_version",), ("hosts",)) for loc in broken):
                break
    return None, gone, index


def _is_host(loc: Loc) -> bool:
    return len(loc) > 1 and loc[0] == "hosts" and isinstance(loc[1], int)


def _drop(data: Any, loc: Loc) -> None:
    """Remove the value at `loc` so the field's default stands in for it."""
    parent: Any = data
    for part in loc[:-1]:
        if not _holds(parent, part):
            return
        parent = parent[part]
    if loc and _holds(parent, loc[-1]):
        del parent[loc[-1]]


def _holds(container: Any, key: str | int) -> bool:
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container)


def _original(loc: Loc, index: list[int]) -> Loc:
    if _is_host(loc) and loc[1] < len(index):
        return (loc[0], index[loc[1]], *loc[2:])
    return loc


def _hidden(loc: Loc, gone: list[Loc]) -> bool:
    """A rule about a field left out (or holding one) says nothing true: a rule about the hosts as a whole
    only when a host was left out."""
    if loc == ("hosts",):
        return any(len(g) == 2 and _is_host(g) for g in gone)
    return any(loc[: len(g)] == g or g[: len(loc)] == loc for g in gone)


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """One parse: the node tree (for lines and keys given twice) and the data built from it."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


class _Refused(yaml.YAMLError):
    def __init__(self, found: str, expected: str, mark: yaml.Mark) -> None:
        super().__init__(found)
        self.found, self.expected, self.line = found, expected, mark.line + 1


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing while it composes what no inventory needs: aliases (a few lines of them
    expand to gigabytes or a cycle) and collections nested deeper than MAX_DEPTH."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(
                f"an alias (*{event.anchor})", "every value written out: aliases are not accepted", event.start_mark
            )
        if not self.check_event(yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"collections nested more than {MAX_DEPTH} deep", "an inventory's shape", mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def index_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], duplicates: list[Loc]) -> None:
    """Record the line of every key and item, and keys given twice (PyYAML keeps the last silently)."""
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            k = key.value if isinstance(key, yaml.ScalarNode) else repr(key)
            if k in seen:
                duplicates.append((*loc, k))
            seen.add(k)
            lines.setdefault((*loc, k), key.start_mark.line + 1)
            index_lines(value, (*loc, k), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index_lines(item, (*loc, i), lines, duplicates)


def _from_pydantic(err: Any, data: dict, name: str, lines: dict[Loc, int]) -> Problem:
    loc = _clean_loc(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        found, expected = f"unknown key {loc[-1]!r}", f"one of: {', '.join(known)}{hint}"
    elif kind == "missing":
        found, expected = "nothing", "this required field"
    elif kind == "literal_error" and loc and loc[0] == "hosts" and "roles" in loc:
        found, expected = f"unknown role {err['input']!r}", f"one of: {', '.join(ROLES)}"
    else:
        found, expected = _short(err.get("input")), _expectation(err)
    return Problem(name, _dotted(loc), found, expected, _host(data, loc), _line(lines, loc))


def _clean_loc(loc: tuple) -> Loc:
    """Drop pydantic's union/validator tags ('IPv4Address', 'function-after[...]') from a location."""
    out: list[str | int] = []
    current: Any = Cluster
    for part in loc:
        step = _step(current, part)
        if step is not _TAG:
            out.append(part)
            current = step
    return tuple(out)


_TAG = object()


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation one step down (a field, a tuple item, a dict value); _TAG if `part` is no step."""
    if annotation is None:
        return None
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    for arg in typing.get_args(annotation) if union else (annotation,):
        while typing.get_origin(arg) is typing.Annotated:
            arg = typing.get_args(arg)[0]
        origin = typing.get_origin(arg)
        if isinstance(part, int) and origin in (tuple, list):
            return typing.get_args(arg)[0]
        if isinstance(part, str) and _is_model(arg):
            known = arg.model_fields.get(part)
            return known.annotation if known else None  # None: an unknown key
        if isinstance(part, str) and origin is dict:
            return typing.get_args(arg)[1]
    return _TAG


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _known_keys(loc: Loc) -> list[str]:
    current: Any = Cluster
    for part in loc:
        current = _step(current, part)
    return [k for k, f in current.model_fields.items() if not f.exclude] if _is_model(current) else []


def _expectation(err: Any) -> str:
    msg: str = err["msg"]
    kind: str = err["type"]
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind.startswith("ip_v4") or "IPv4" in msg:
        return "an IPv4 address" + (" or network in CIDR form (e.g. 10.96.0.0/12)" if "network" in kind else "")
    if kind == "literal_error":
        return msg.removeprefix("Input should be ").replace("'", "")
    return msg.removeprefix("Value error, ").removeprefix("Input should be ").rstrip(".")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _host(data: Any, loc: Loc) -> str | None:
    if len(loc) >= 2 and loc[0] == "hosts" and isinstance(loc[1], int) and isinstance(data, dict):
        hosts = data.get("hosts")
        if isinstance(hosts, list) and loc[1] < len(hosts) and isinstance(hosts[loc[1]], dict):
            name = hosts[loc[1]].get("name")
            return name if isinstance(name, str) and _PRINTABLE.fullmatch(name) else f"#{loc[1] + 1}"
    return None


def _line(lines: dict[Loc, int], loc: Loc) -> int | None:
    while loc not in lines and loc:
        loc = loc[:-1]
    return lines.get(loc)


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) or not _PRINTABLE.fullmatch(part):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out or "(document)"
