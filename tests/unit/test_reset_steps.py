"""playbooks.reset: which steps a host's reset takes and in what order, and the file steps' shell run for real
against a scratch directory (the whole reset runs on the lab: tests/lab/test_reset.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kubefab.playbooks import reset
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.plan import Step


def names(steps: tuple[Step, ...]) -> list[str]:
    return [s.name for s in steps]


def sh(command: str) -> bool:
    return subprocess.run(["bash", "-c", command], capture_output=True, check=False).returncode == 0


def test_services_stop_kubelet_before_its_pods_containerd_after_them_and_etcd_last(example_inputs: Inputs) -> None:
    host = example_inputs.cluster.hosts[0]
    order = names(reset.steps(example_inputs, host, delete_data=False))
    stops = [n for n in order if n.endswith("stopped and disabled")]
    assert stops[0] == "kube-proxy stopped and disabled" and stops[-1] == "etcd stopped and disabled"
    assert order.index("kubelet stopped and disabled") < order.index("pods removed")
    assert order.index("pods removed") < order.index("containerd stopped and disabled")
    assert order.index("etcd stopped and disabled") < order.index("files and binaries removed")
    assert "routes into the pod network 10.244.0.0/16 removed" in order


def test_etcd_data_and_its_owner_stay_unless_asked(example_inputs: Inputs) -> None:
    host = example_inputs.cluster.hosts[0]
    kept = reset.steps(example_inputs, host, delete_data=False)
    assert "etcd data removed" not in names(kept) and "user etcd removed" not in names(kept)
    assert not any("/var/lib/etcd" in s.run.split() for s in kept)
    gone = reset.steps(example_inputs, host, delete_data=True)
    assert "etcd data removed" in names(gone) and "user etcd removed" in names(gone)


def test_a_worker_reset_has_no_control_plane_or_etcd_steps(render_example) -> None:
    rendered = render_example(
        lambda d: d["hosts"].append({"name": "k8s-4", "ip": "192.168.10.14", "roles": ["worker"]})
    )
    worker = rendered.cluster.host("k8s-4")
    order = names(reset.steps(rendered.inputs, worker, delete_data=True))
    assert "kubelet stopped and disabled" in order and "pods removed" in order
    assert not [n for n in order if n.startswith(("etcd", "kube-apiserver", "haproxy", "keepalived"))]
    files = next(s for s in reset.steps(rendered.inputs, worker, True) if s.name == "files and binaries removed")
    assert "/usr/local/bin/kubelet" in files.run and "/usr/local/bin/kube-apiserver" not in files.run


def test_empty_directories_go_deepest_first_and_only_when_empty(tmp_path: Path) -> None:
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "user-file").write_text("mine")
    dirs = reset.parents([f"{tmp_path}/a/b/c/file", f"{tmp_path}/keep/file"])
    assert dirs.index(f"{tmp_path}/a/b/c") < dirs.index(f"{tmp_path}/a/b") < dirs.index(f"{tmp_path}/a")
    assert "/" not in dirs and "/tmp" not in dirs
    step = reset._empty_parents([d for d in dirs if d.startswith(str(tmp_path) + "/")])
    assert not sh(step.unless)
    assert sh(step.run) and sh(step.unless)  # a second run has nothing to do
    assert not (tmp_path / "a").exists() and (tmp_path / "keep" / "user-file").read_text() == "mine"


def test_the_hosts_block_goes_and_the_rest_of_the_file_stays(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n# BEGIN kubefab lab\n10.0.0.1 a\n# END kubefab lab\n10.9.9.9 mine\n")
    step = reset._block(str(hosts), "# BEGIN kubefab lab", "# END kubefab lab")
    assert not sh(step.unless)
    assert sh(step.run) and sh(step.unless)
    assert hosts.read_text() == "127.0.0.1 localhost\n10.9.9.9 mine\n"


def test_files_removed_is_done_only_when_none_is_left(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "missing")  # a dangling link still counts as left over
    step = reset._removed("test files", [str(tmp_path / "f"), str(tmp_path / "link"), str(tmp_path / "absent")])
    assert not sh(step.unless)
    (tmp_path / "f").unlink()
    assert not sh(step.unless)
    (tmp_path / "link").unlink()
    assert sh(step.unless)
