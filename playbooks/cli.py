"""The `kubefab` command: Fabric's own program with kubefab's tasks, usable without a fabfile."""

import faulthandler
import signal
import sys
from importlib.metadata import PackageNotFoundError, version

from fabric import Config, Executor
from fabric.main import Fab

from playbooks.tasks import ns


def _version() -> str:
    try:
        return version("kubefab")
    except PackageNotFoundError:  # run from a checkout that was not pip-installed
        return "0+checkout"


program = Fab(name="kubefab", namespace=ns, version=_version(), executor_class=Executor, config_class=Config)


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
