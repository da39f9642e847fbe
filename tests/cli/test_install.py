"""kubefab as an operator installs it: the wheel, without the test extra, in a fresh virtual environment,
runs its commands; and the engine's remote side loads without the PKI writer."""

from __future__ import annotations

import subprocess
import sys
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
    suite = run(
        venv / "bin" / "python", "-c", "import playbooks.verify as v; print(v.SUITE.is_dir(), v.SUITE)", cwd=tmp_path
    )
    assert suite.stdout.startswith("True ") and "site-packages" in suite.stdout, suite.stdout + suite.stderr
    assert (Path(suite.stdout.split()[1]) / "test_hosts.py").is_file()
    tests = run(venv / "bin" / "python", "-c", "import tests", cwd=tmp_path)
    assert tests.returncode != 0, "the wheel must not install the test suite"


def test_apply_does_not_load_the_pki_writer() -> None:
    code = "import sys, playbooks.apply; print(sorted(m for m in sys.modules if m.startswith('pki')))"
    out = run(sys.executable, "-c", code, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
