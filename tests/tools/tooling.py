"""What the real-tool tests share."""

from __future__ import annotations

import shutil

import pytest


def need(tool: str) -> str:
    """The tool's path; skips (saying what to install) on a machine without it."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed on this machine (.ci/install installs it)")
    return path
