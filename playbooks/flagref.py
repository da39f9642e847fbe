"""The official command-line references of the Kubernetes components, per minor version.

Data files live in `playbooks/data/flags/<minor>/<component>.txt`: one flag per line without dashes,
optionally followed by the word `deprecated`; `#` starts a comment.
"""

from functools import cache
from pathlib import Path

FLAGS_DIR = Path(__file__).parent / "data" / "flags"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")


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
