"""The `kubefab` command line itself: one task per command, only the global options kubefab honours, and the
exit codes docs/troubleshooting.md promises (0 done, 1 a check or step failed, 2 usage or inventory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubefab.playbooks import cli
from tests.conftest import EXAMPLE


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        cli.program.run(["kubefab", *argv])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "option", ["-R", "--dry", "-H", "--hosts", "--prompt-for-sudo-password", "-i", "--echo", "-f", "--write-pyc"]
)
def test_global_options_kubefab_does_not_honour_are_neither_listed_nor_accepted(option: str, capsys) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and option not in out.split()
    assert not any(word.startswith(f"{option}=") or word == f"{option}," for word in out.split())
    code, _, err = run([option, "x", "inventory.check", "--inventory", str(EXAMPLE)], capsys)
    assert code == 2 and "kubefab --help" in err, err


def test_a_stray_word_after_a_task_is_not_a_second_task(capsys) -> None:
    code, out, err = run(["inventory.check", "--inventory", str(EXAMPLE), "deploy"], capsys)
    assert code == 2
    assert "one task per command, got 2: inventory.check, deploy" in err
    assert "inventory OK" not in out  # refused before the first task ran


@pytest.mark.parametrize(
    "argv",
    [
        ["no-such-task"],
        ["deploy", "--no-such-option"],
        ["deploy", "--command-timeout", "soon"],
        ["--help", "no-such-task"],
    ],
)
def test_usage_errors_exit_2_with_a_pointer_to_help(argv: list[str], capsys) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2, err
    assert "see `kubefab --help`" in err


def test_an_inventory_error_exits_2_and_a_failed_check_1(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace('kubernetes_version: "1.35"', "kubernetes_version: 1.35"))
    code, _, err = run(["inventory.check", "--inventory", str(bad)], capsys)
    assert code == 2
    assert "kubernetes_version: found 1.35; expected text (found a number; write it in quotes" in err
    inventory = tmp_path / "cluster.yaml"
    inventory.write_text(EXAMPLE.read_text() + f"cluster_dir: {tmp_path / 'cluster'}\n")
    code, _, err = run(["certs.check", "--inventory", str(inventory)], capsys)
    assert code == 1 and "need attention" in err


def test_version_help_and_the_completion_script_name_kubefab(capsys) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("kubefab ")
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and out.startswith("Usage: kubefab ")
    code, out, _ = run(["--print-completion-script", "bash"], capsys)
    assert code == 0 and "complete -F _complete_kubefab -o default kubefab" in out
    code, out, _ = run(["--complete", "--", "kubefab", "inventory."], capsys)
    assert code == 0 and "inventory.check" in out.split()
