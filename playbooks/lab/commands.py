"""Running the machine's own tools (debootstrap, ip, mount, apt-get) with errors that say what failed."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


class CommandError(RuntimeError):
    pass


def run(argv: Sequence[str | Path], *, cwd: Path | None = None, check: bool = True) -> str:
    """Run a command, return its stdout; on failure raise with the command and its stderr."""
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        cmd = " ".join(str(a) for a in argv)
        raise CommandError(f"`{cmd}` exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout
