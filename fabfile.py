"""`fab` entry point: the same tasks as the `kubefab` command (see playbooks/tasks)."""

from kubefab.playbooks.tasks import ns

__all__ = ["ns"]
