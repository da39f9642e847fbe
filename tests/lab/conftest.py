"""The lab for end-to-end tests: one 3-host lab per session, brought up once and down at the end.

Lab tests are skipped, with the reason, only where the machine cannot run them: not root, or no
systemd-nspawn / debootstrap. They use the lab directory `fab lab.up` uses ($KUBEFAB_LAB_DIR or the
default), so a cached base image and bundle are reused, and a lab already running there is replaced.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest
from fabric import Connection
from labkit import TIMINGS, Lab

from playbooks.lab import lifecycle
from playbooks.lab.access import connect
from playbooks.lab.image import ensure_image
from playbooks.lab.settings import lab_paths

TEARDOWN_MODULE = "test_lab_teardown.py"


def missing_requirement() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root (bridge, overlay mounts, cgroups, systemd-nspawn)"
    for tool in ("systemd-nspawn", "debootstrap"):
        if shutil.which(tool) is None:
            return f"lab tests need {tool} (apt-get install systemd-container debootstrap)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing_requirement()
    for item in items:
        if reason and item.get_closest_marker("lab"):
            item.add_marker(pytest.mark.skip(reason=reason))
    # The lab's own tests first (on fresh hosts), then the deploy tests, and `down` last: it ends the lab.
    items.sort(key=lambda item: (item.path.name == TEARDOWN_MODULE,
                                 item.path.name.startswith(("test_deploy", "test_kubernetes"))))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "lab timings")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what:<40} {seconds:6.2f} s")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    paths = lab_paths()
    connections: dict[str, Connection] = {}
    try:
        lifecycle.down(paths)  # a rebuilt image must not change under hosts still running on it
        start = time.monotonic()
        ensure_image(paths)
        TIMINGS["base image (build or cache check)"] = time.monotonic() - start
        start = time.monotonic()
        state = lifecycle.up(3, paths=paths)
        TIMINGS["lab.up, 3 hosts (bundle built or cached)"] = time.monotonic() - start
        connections.update((h.name, connect(paths, h)) for h in state.hosts)
        yield Lab(paths, state, connections)
    finally:  # also when `up` failed half-way
        for conn in connections.values():
            conn.close()
        lifecycle.down(paths)
