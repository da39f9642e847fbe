"""The `kubefab` command: Fabric's own program with kubefab's tasks, usable without a fabfile."""

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


def main() -> None:
    program.run()


if __name__ == "__main__":
    main()
