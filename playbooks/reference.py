"""Per-minor references generated from the real binaries: every flag each component's `--help` lists
(deprecated ones marked), and the JSON fields of the configuration kinds kubefab renders, read from the API
types of the same module version. `python3 -m playbooks.reference 1.37 ...` builds the minor's pinned
Kubernetes (cached) and rewrites playbooks/data/flags/<minor>/; the tests check every rendered flag and field
against these files, and a lab test checks the files still match the binaries the lab runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

from kubefab.playbooks import flagref, versions
from kubefab.playbooks.lab.bundle import machine_arch
from kubefab.playbooks.source import GoTool, build, cache_dir, cached, helper_output

FLAG = re.compile(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)")


def parse_help(text: str) -> dict[str, bool]:
    """`--help` output -> flag name -> deprecated. A flag's description may wrap onto the following lines."""
    flags: dict[str, bool] = {}
    current = None
    for line in text.splitlines():
        match = FLAG.match(line)
        if match:
            current = match.group(1)
            flags[current] = "DEPRECATED" in line
        elif not line.startswith(" "):  # a section heading or a blank line ends the description
            current = None
        elif current and "DEPRECATED" in line:
            flags[current] = True
    return flags


def flags_file(component: str, version: str, flags: dict[str, bool]) -> str:
    lines = [f"# `{component} --help` of v{version}, written by `python3 -m playbooks.reference`; do not edit."]
    lines += [f"{name} deprecated" if deprecated else name for name, deprecated in sorted(flags.items())]
    return "\n".join(lines) + "\n"


def fields_file(version: str, fields: dict[str, list[str]]) -> str:
    return (
        f"# JSON fields of the config kinds in the API types of k8s.io/kubernetes v{version} (nested ones as\n"
        "# parent.child), written by `python3 -m playbooks.reference`; do not edit.\n"
        + yaml.safe_dump(fields, sort_keys=True, default_flow_style=False)
    )


def help_of(binary: Path) -> str:
    # Components print their help on stdout and exit 0; kubelet and some others use stderr.
    proc = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout + proc.stderr


def generate(minor: str, out_root: Path = flagref.FLAGS_DIR) -> Path:
    version = versions.stack(minor).kubernetes
    go, arch = GoTool(), machine_arch()
    go_version = go.version()
    built = cached("kubernetes_server", version, arch, cache_dir(), go_version) or build(
        "kubernetes_server", version, arch, cache_dir(), go, go_version
    )
    out = out_root / minor
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(built.path) as tar:
        for component in flagref.COMPONENTS:
            member = tar.getmember(f"kubernetes/server/bin/{component}")
            tar.extract(member, tmp, filter="data")
            text = help_of(Path(tmp) / member.name)
            flags = parse_help(text)
            if len(flags) < 10:
                raise RuntimeError(f"{component} v{version} --help listed {len(flags)} flags:\n{text[:2000]}")
            (out / f"{component}.txt").write_text(flags_file(component, version, flags))
    fields = json.loads(helper_output(built.path, "fields").read_text())
    (out / flagref.FIELDS_FILE).write_text(fields_file(version, fields))
    return out


if __name__ == "__main__":
    for wanted in sys.argv[1:] or versions.supported_minors():
        print(f"wrote {generate(wanted)}")
