"""kubefab as an operator installs it: the wheel, without the test extra, in a fresh virtual environment,
runs its commands; and the engine's remote side loads without the PKI writer."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def run(*argv: str | Path, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_the_wheel_runs_in_a_fresh_venv_without_the_test_extra(tmp_path: Path) -> None:
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", ROOT)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("kubefab-*.whl")
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    installed = run(venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", wheel)
    assert installed.returncode == 0, installed.stderr
    kubefab = venv / "bin" / "kubefab"
    # Run from elsewhere so nothing of the checkout is importable.
    version = run(kubefab, "--version", cwd=tmp_path)
    assert version.returncode == 0 and "kubefab" in version.stdout.lower(), version.stdout + version.stderr
    for task, words in (("lab.up", "--hosts"), ("verify", "--inventory")):
        shown = run(kubefab, "--help", task, cwd=tmp_path)
        assert shown.returncode == 0 and words in shown.stdout, shown.stdout + shown.stderr
    with zipfile.ZipFile(wheel) as z:
        top = {name.split("/")[0] for name in z.namelist()}
    assert top == {"kubefab", wheel.name.split("-py")[0] + ".dist-info"}, top  # one distinct top-level name
    # A real task from the installed package, away from the checkout: templates and data ship with it.
    (tmp_path / "work").mkdir()
    shutil.copy(ROOT / "inventory" / "example.yaml", tmp_path / "work" / "cluster.yaml")
    rendered = run(kubefab, "render", "--inventory", "cluster.yaml", "--out", "out", cwd=tmp_path / "work")
    assert rendered.returncode == 0, rendered.stdout[-2000:] + rendered.stderr[-2000:]
    assert (tmp_path / "work" / "out" / "k8s-1" / "etc" / "kubernetes" / "apiserver").is_file()
    assert (tmp_path / "work" / "clusters" / "book" / "pki" / "ca.crt").is_file()
    verify = "import kubefab.playbooks.verify as v; print(v.SUITE.is_dir(), v.SUITE)"
    suite = run(venv / "bin" / "python", "-c", verify, cwd=tmp_path)
    assert suite.stdout.startswith("True ") and "site-packages" in suite.stdout, suite.stdout + suite.stderr
    assert (Path(suite.stdout.split()[1]) / "test_hosts.py").is_file()
    tests = run(venv / "bin" / "python", "-c", "import tests", cwd=tmp_path)
    assert tests.returncode != 0, "the wheel must not install the test suite"


def test_apply_does_not_load_the_pki_writer() -> None:
    code = "import sys, kubefab.playbooks.apply; print(sorted(m for m in sys.modules if m.startswith('kubefab.pki')))"
    out = run(sys.executable, "-c", code, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
