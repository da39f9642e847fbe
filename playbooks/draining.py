"""Emptying a node before its kubelet goes away (an upgrade) or the node does (a removal): cordon, then evict
every pod but DaemonSets' through the eviction API, which respects PodDisruptionBudgets."""

from __future__ import annotations

from collections.abc import Callable

from kubefab.playbooks.remote import Output

# (step name, kubectl arguments, check, timeout) -> the command's output, run where the admin kubeconfig is.
Kubectl = Callable[..., Output]


def drain(kubectl: Kubectl, name: str, timeout: int) -> str | None:
    """Cordon `name` and drain it within `timeout` seconds: None once drained, else what blocked it (the pods
    whose eviction a PodDisruptionBudget refused, or kubectl's error). The node stays cordoned either way."""
    kubectl(f"cordon {name}", f"cordon {name}")
    out = kubectl(
        f"drain {name}",
        f"drain {name} --ignore-daemonsets --delete-emptydir-data --timeout={timeout}s",
        check=False,
        timeout=timeout + 30,
    )
    if out.ok:
        return None
    blocking = [line for line in (out.stderr + out.stdout).splitlines() if "evict" in line or "error" in line]
    return "\n".join(blocking[-6:] or [out.stderr.strip()[-500:]])
