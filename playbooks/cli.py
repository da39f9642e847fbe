"""The `kubefab` command: Fabric's own program with kubefab's tasks, usable without a fabfile."""

from fabric import Config, Executor
from fabric.main import Fab

from playbooks.tasks import ns

program = Fab(name="kubefab", namespace=ns, version="0.1.0", executor_class=Executor, config_class=Config)


def main() -> None:
    program.run()


if __name__ == "__main__":
    main()
