"""The command-line and configuration references of the Kubernetes components, per minor version, generated
from the real binaries and API types of each minor's pinned release (`python3 -m playbooks.reference`).

`playbooks/data/flags/<minor>/<component>.txt`: one flag per line without dashes, optionally followed by the
word `deprecated`; `#` starts a comment. `config-fields.yaml`: kind -> every JSON field, nested ones as
`parent.child`.
"""

from functools import cache
from pathlib import Path

import yaml

FLAGS_DIR = Path(__file__).parent / "data" / "flags"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
FIELDS_FILE = "config-fields.yaml"


@cache
def valid_flags(component: str, minor: str) -> dict[str, bool]:
    """Flag name -> whether the reference marks it deprecated."""
    path = FLAGS_DIR / minor / f"{component}.txt"
    flags: dict[str, bool] = {}
    for line in path.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            flags[words[0]] = "deprecated" in words[1:]
    return flags


@cache
def config_fields(kind: str, minor: str) -> frozenset[str]:
    return frozenset(yaml.safe_load((FLAGS_DIR / minor / FIELDS_FILE).read_text())[kind])


def field_paths(doc: object, prefix: str = "") -> set[str]:
    """The keys of a rendered config document as `parent.child` paths, through lists; map-valued fields whose
    keys are data (featureGates, evictionHard, ...) are the caller's to leave out."""
    out: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.add(prefix + str(key))
            out |= field_paths(value, f"{prefix}{key}.")
    elif isinstance(doc, list):
        for item in doc:
            out |= field_paths(item, prefix)
    return out
