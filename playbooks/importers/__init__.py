"""Ansible inventories of kubeasz and kubespray -> a kubefab inventory, with a report of what became of every
setting. Pure except for reading the source files: `convert` returns data, `document` the YAML to write."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubefab.playbooks.importers import kubeasz, kubespray
from kubefab.playbooks.importers.ansible import Inventory, read
from kubefab.playbooks.importers.report import Report, SourceError
from kubefab.playbooks.inventory import validate_text
from kubefab.playbooks.problems import Problem

FORMATS = ("kubeasz", "kubespray")
# What a directory given as the source may hold: kubespray's inventory files, then kubeasz's.
SOURCE_FILES = ("hosts.yaml", "hosts.yml", "inventory.ini", "hosts.ini", "hosts")
ORDER = ("name", "kubernetes_version", "network", "api", "ssh", "container_runtime", "cni", "kube_proxy_mode", "hosts")

__all__ = ["FORMATS", "Imported", "SourceError", "convert", "document"]


@dataclass(frozen=True)
class Imported:
    source: Path
    format: str
    data: dict[str, Any]
    report: Report


def convert(src: Path, fmt: str | None = None, name: str | None = None) -> Imported:
    """Read `src` (a file, or a directory holding one of SOURCE_FILES) as `fmt`, or as the format it looks like."""
    path = _source_file(src)
    inv = read(path)
    fmt = fmt or detect(inv)
    if fmt not in FORMATS:
        raise SourceError(str(path), None, f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    draft = (kubeasz if fmt == "kubeasz" else kubespray).convert(inv, name)
    data = {k: draft.data[k] for k in ORDER if k in draft.data} | draft.data
    return Imported(path, fmt, data, draft.report)


def _source_file(src: Path) -> Path:
    if not src.is_dir():
        return src
    for candidate in SOURCE_FILES:
        if (src / candidate).is_file():
            return src / candidate
    raise SourceError(str(src), None, f"no inventory in this directory: expected one of {', '.join(SOURCE_FILES)}")


def detect(inv: Inventory) -> str:
    """kubespray's groups are kube_control_plane and k8s_cluster; kubeasz's kube_master (without k8s_cluster,
    which old kubespray inventories have) and ex_lb."""
    groups = {name for name, group in inv.groups.items() if group.hosts or group.children or group.vars}
    if groups & {"kube_control_plane", "k8s_cluster"}:
        return "kubespray"
    if groups & {"kube_master", "ex_lb"}:
        return "kubeasz"
    raise SourceError(
        str(inv.path),
        None,
        "neither a kubeasz inventory (groups kube_master, kube_node, ex_lb) nor a "
        "kubespray one (kube_control_plane, kube_node, k8s_cluster); "
        "name the format with --tool",
    )


def document(imported: Imported, out: Path) -> tuple[str, list[Problem]]:
    """The YAML to write to `out`, and its validation problems (lines as in that text). With fields missing or
    errors, the text opens with a NOT VALID YET block listing them, so the file itself says what to fill in."""
    body = yaml.safe_dump(imported.data, sort_keys=False, default_flow_style=None, width=110)
    header = [
        f"# Imported by `kubefab import-inventory` from {imported.source} ({imported.format}).",
        "# Check it against the report the import printed, then: kubefab inventory.check --inventory FILE",
    ]
    problems = validate_text(body, out).problems
    missing = [f"#   missing: {e.target}: {e.note}" for e in imported.report.of("missing")]
    if missing or any(p.severity == "error" for p in problems):
        header += ["#", "# NOT VALID YET: fill in or fix what follows (lines are this file's), then check it again."]
        shift = len(header) + len(missing) + len(problems)
        problems = [dataclasses.replace(p, line=p.line + shift) if p.line else p for p in problems]
        header += missing + [f"#   {p.severity}: {p}" for p in problems]
    return "\n".join(header) + "\n" + body, problems
