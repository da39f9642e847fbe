"""Ctrl-C during a run that stops on it (`kubefab upgrade`): the first one lets the command under way finish and
stops the next before it starts; a second one interrupts at once; outside such a run nothing changes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from kubefab.playbooks.remote import STOP, Remote, stop_on_interrupt
from tests.conftest import Rendered


def test_the_first_ctrl_c_stops_the_next_command_and_the_second_stops_at_once(
    render_example: Callable[..., Rendered],
) -> None:
    def on_loopback(data: dict) -> None:  # were a command started, it would go to a closed port here
        data["hosts"][0]["ssh"] = {"host": "127.0.0.1", "port": 1}

    c = render_example(on_loopback).cluster
    remote = Remote(c, c.hosts[0], connect_timeout=2, timeout=5)
    before = signal.getsignal(signal.SIGINT)
    with stop_on_interrupt():
        os.kill(os.getpid(), signal.SIGINT)  # handled: no exception here, the run goes on to its next command
        assert STOP.is_set()
        with pytest.raises(KeyboardInterrupt):
            remote.run("next step", "true")  # refused before connecting (a connection would fail otherwise)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs at once and raises
    assert not STOP.is_set() and signal.getsignal(signal.SIGINT) is before
    remote.close()
