"""The `kubefab` command: invoke's program with kubefab's tasks, one task per command, and only the global options
kubefab honours. Exit codes: 0 done, 1 a check or a step failed, 2 the command line or the inventory is wrong
(`plan --exit-code` adds 3: changes pending)."""

import faulthandler
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version

from invoke import Config, Executor, Program
from invoke.completion.complete import print_completion_script
from invoke.exceptions import Exit, ParseError
from invoke.util import enable_logging

from kubefab.playbooks.tasks import ns

USAGE = 2
# Fabric's and invoke's other global options (--dry, --hosts, --identity, --prompt-for-sudo-password, --echo,
# --config, ...) would be accepted and ignored, or worse: kubefab connects with the inventory's SSH settings.
GLOBAL_OPTIONS = (
    "complete",
    "debug",
    "help",
    "list",
    "list-depth",
    "list-format",
    "print-completion-script",
    "version",
)


def _version() -> str:
    try:
        return version("kubefab")
    except PackageNotFoundError:  # run from a checkout that was not pip-installed
        return "0+checkout"


def usage_error(message: str) -> Exit:
    return Exit(f"{message}\nsee `kubefab --help` (the tasks) or `kubefab --help TASK` (its options)", code=USAGE)


@contextmanager
def usage_errors() -> Iterator[None]:
    """invoke's parse errors, and the ValueError of an option's value of the wrong type (`--command-timeout soon`),
    as usage errors."""
    try:
        yield
    except ParseError as exc:
        raise usage_error(str(exc)) from None
    except ValueError as exc:
        raise usage_error(f"an option's value is not of its type ({exc})") from None


class Kubefab(Program):
    def core_args(self) -> list:
        return [a for a in super().core_args() if a.name in GLOBAL_OPTIONS]

    def create_config(self) -> None:
        # No configuration files: the inventory says everything, and a ~/.invoke.yaml must not change a deploy.
        self.config = Config(lazy=True)

    def parse_core(self, argv: list[str] | None) -> None:
        self.normalize_argv(argv)
        with usage_errors():
            self.parse_core_args()
        if self.args.debug.value:
            enable_logging()
        if self.args.version.value:
            self.print_version()
            raise Exit
        if self.args["print-completion-script"].value:
            print_completion_script(shell=self.args["print-completion-script"].value, names=self.binary_names)
            raise Exit

    def parse_tasks(self) -> None:
        with usage_errors():
            super().parse_tasks()
        if len(self.tasks) > 1:
            names = ", ".join(t.name for t in self.tasks)
            raise usage_error(f"one task per command, got {len(self.tasks)}: {names}")

    def parse_cleanup(self) -> None:
        with usage_errors():
            super().parse_cleanup()

    def update_config(self, merge: bool = True) -> None:
        if merge:
            self.config.merge()


program = Kubefab(
    name="kubefab",
    binary="kubefab",
    binary_names=["kubefab"],
    namespace=ns,
    version=_version(),
    executor_class=Executor,
)


def help_first(argv: list[str]) -> list[str]:
    """`kubefab TASK ... --help` as `kubefab --help TASK`: invoke would hand `--help` to a task's positional
    argument (`lab.ssh NAME`, `import-inventory SRC`) instead of showing the task's help."""
    words = argv[1:]
    tasks = [w for w in words if not w.startswith("-")]
    if tasks and any(w in ("--help", "-h") for w in words[words.index(tasks[0]) :]):
        return [argv[0], "--help", tasks[0]]
    return argv


def dump_stacks_on_usr1() -> None:
    """`kill -USR1 <pid>` makes a run that seems stuck print every thread's stack to stderr and go on."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def main() -> None:
    dump_stacks_on_usr1()
    program.run(help_first(sys.argv))


if __name__ == "__main__":
    main()
