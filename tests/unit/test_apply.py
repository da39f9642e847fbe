"""Carrying plans out: marked blocks, root shells, phase selection."""

from __future__ import annotations

import shlex

import pytest
from invoke.exceptions import Exit

from kubefab.playbooks.apply import with_block
from kubefab.playbooks.plan import Block
from kubefab.playbooks.remote import Remote
from kubefab.playbooks.tasks.deploy import select


def test_block_is_appended_replaced_and_stable() -> None:
    block = Block("/etc/hosts", "kubefab c", "10.0.0.1 a")
    once = with_block("127.0.0.1 localhost", block)
    assert once == "127.0.0.1 localhost\n# BEGIN kubefab c\n10.0.0.1 a\n# END kubefab c\n"
    assert with_block(once, block) == once
    changed = with_block(once + "::1 localhost6\n", Block("/etc/hosts", "kubefab c", "10.0.0.2 b"))
    assert changed == "127.0.0.1 localhost\n# BEGIN kubefab c\n10.0.0.2 b\n# END kubefab c\n::1 localhost6\n"


def test_sudo_wraps_the_whole_step_in_one_root_shell() -> None:
    remote = Remote.__new__(Remote)
    remote.sudo = True
    wrapped = remote.wrap("a && b > '/x y'")
    assert wrapped == "sudo -n sh -c " + shlex.quote("a && b > '/x y'")
    assert shlex.split(wrapped)[-1] == "a && b > '/x y'"


def test_select_phases() -> None:
    assert select(None, None)[0] == "prepare" and select(None, None)[-1] == "addons"
    assert select("etcd,lb", None) == ["etcd", "lb"]
    assert "addons" not in select(None, "addons")
    with pytest.raises(Exit, match="unknown phase"):
        select("etdc", None)
