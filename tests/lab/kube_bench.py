"""kube-bench (the CIS Kubernetes Benchmark's checker) built from source through the Go module proxy, with a
configuration that tells it where a kubefab host keeps each daemon's flags and files.

kube-bench knows kubeadm's layout; on a binary install it takes, per component, the first path of its lists that
exists, so kubefab's paths go first. One check is adapted: 1.4.1 reads only the scheduler's `--profiling` flag,
while kubefab sets `enableProfiling: false` in the scheduler's --config file (the flag is deprecated and
ignored with --config); the adapted check reads that field instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from kubefab.playbooks.components.etcd import DATA_DIR
from kubefab.playbooks.source import CACHE_ENV, DEFAULT_CACHE

MODULE = "github.com/aquasecurity/kube-bench"
VERSION = "v0.15.6"  # pinned: the module proxy here does not list its versions
BENCHMARK = "cis-1.12"  # the newest CIS benchmark it ships; none is mapped to 1.35+ and detection guesses
# FAILs that are kubefab's stated choices, each with where it is documented.
EXCEPTIONS = {
    "4.2.10": "kubelet rotateCertificates off: kubefab issues and renews kubelet certificates from the operator's "
    "machine (docs/operations.md, Render and audit)",
}

# component -> key -> kubefab's paths, put first in kube-bench's lists (and as the default).
PATHS = {
    ("master", "apiserver"): {"confs": ["/etc/kubernetes/apiserver", "/etc/systemd/system/kube-apiserver.service"]},
    ("master", "controllermanager"): {
        "confs": ["/etc/kubernetes/controller-manager", "/etc/systemd/system/kube-controller-manager.service"],
        "kubeconfig": ["/etc/kubernetes/controller-manager.conf"],
    },
    ("master", "scheduler"): {
        "confs": ["/etc/kubernetes/scheduler", "/etc/systemd/system/kube-scheduler.service"],
        "kubeconfig": ["/etc/kubernetes/scheduler.conf"],
    },
    ("master", "etcd"): {"confs": ["/etc/etcd/etcd.conf"], "datadirs": [DATA_DIR]},
    ("etcd", "etcd"): {"confs": ["/etc/etcd/etcd.conf"], "datadirs": [DATA_DIR]},
    ("node", "kubelet"): {
        "svc": ["/etc/systemd/system/kubelet.service"],
        "confs": ["/var/lib/kubelet/config.yaml"],
        "kubeconfig": ["/etc/kubernetes/kubelet.conf"],
        "cafile": ["/etc/kubernetes/pki/ca.crt"],
    },
    ("node", "proxy"): {
        "svc": ["/etc/systemd/system/kube-proxy.service"],
        "confs": ["/var/lib/kube-proxy/config.yaml"],
        "kubeconfig": ["/etc/kubernetes/kube-proxy.conf"],
    },
}
DEFAULTS = {
    "confs": "defaultconf",
    "svc": "defaultsvc",
    "kubeconfig": "defaultkubeconfig",
    "datadirs": "defaultdatadir",
}
SCHEDULER_PROFILING = (
    '        audit: "/bin/ps -ef | grep $schedulerbin | grep -v grep"\n'
    "        tests:\n"
    "          test_items:\n"
    '            - flag: "--profiling"\n',
    '        audit: "/bin/ps -ef | grep $schedulerbin | grep -v grep"\n'
    '        audit_config: "cat /etc/kubernetes/kube-scheduler.yaml"\n'
    "        tests:\n"
    "          test_items:\n"
    '            - flag: "--profiling"\n'
    '              path: "{.enableProfiling}"\n',
)


def build(log=print) -> Path:
    """The directory holding kube-bench and its pristine cfg/, built once per version under the kubefab cache."""
    out = Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE)) / "kube-bench" / VERSION
    if (out / "kube-bench").exists() and (out / "cfg" / BENCHMARK).is_dir():
        return out
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    info = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{VERSION}"], capture_output=True, text=True, env=env, check=False
    )
    if info.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE}@{VERSION}: {info.stdout}{info.stderr}")
    source = Path(json.loads(info.stdout)["Dir"])
    log(f"building kube-bench {VERSION} from {MODULE} ...")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    flags = f"-s -w -X {MODULE}/cmd.KubeBenchVersion={VERSION}"
    built = subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", flags, "-o", str(tmp / "kube-bench"), "."],
        cwd=source,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if built.returncode != 0:
        raise RuntimeError(f"go build kube-bench: {built.stderr[-3000:]}")
    shutil.copytree(source / "cfg", tmp / "cfg")
    for path in [tmp / "cfg", *(tmp / "cfg").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the module cache's files are read-only
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def install(built: Path, target: Path) -> None:
    """kube-bench and a cfg/ configured for kubefab hosts, into `target` (a lab host's /opt/kube-bench)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copy2(built / "kube-bench", target / "kube-bench")
    shutil.copytree(built / "cfg", target / "cfg")
    configure(target / "cfg")


def configure(cfg: Path) -> None:
    """kube-bench's cfg/ made to find a kubefab host: its config.yaml with kubefab's paths first, and the
    scheduler profiling check reading the --config file."""
    config = yaml.safe_load((cfg / "config.yaml").read_text())
    for (section, component), keys in PATHS.items():
        entry = config[section][component]
        for key, paths in keys.items():
            entry[key] = [*paths, *(p for p in entry.get(key, []) if p not in paths)]
            if key in DEFAULTS:
                entry[DEFAULTS[key]] = paths[0]
    (cfg / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    master = cfg / BENCHMARK / "master.yaml"
    text = master.read_text()
    anchor = text.index("      - id: 1.4.1\n")
    old, new = SCHEDULER_PROFILING
    at = text.index(old, anchor)  # the check as this kube-bench version writes it; a new version must be read again
    master.write_text(text[:at] + new + text[at + len(old) :])


def targets(roles: tuple[str, ...]) -> list[str]:
    found = []
    if "control_plane" in roles:
        found += ["master", "controlplane"]
    if "etcd" in roles:
        found.append("etcd")
    if "worker" in roles:
        found.append("node")
    return found


def results(report: dict) -> dict[str, tuple[str, str]]:
    """test number -> (status, description) from `kube-bench --json`."""
    return {
        r["test_number"]: (r["status"], r["test_desc"])
        for control in report.get("Controls", [])
        for group in control.get("tests", [])
        for r in group.get("results", [])
    }
