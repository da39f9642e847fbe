"""Deterministic .tar.gz: sorted members, fixed owner and mtime, no gzip timestamp or name, so the same
files always give the same bytes (and the bundle's checksums stay stable across rebuilds)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import BinaryIO

MTIME = 0
# What a member holds: bytes, a file on disk (streamed: release binaries are tens of MB each), or None for a
# directory, whose name ends in '/'.
Member = bytes | Path | None


def tar_gz(members: dict[str, Member], mode: int = 0o755, level: int = 6) -> bytes:
    """Archive name -> content, as bytes."""
    buf = io.BytesIO()
    write_tar_gz(buf, members, mode, level)
    return buf.getvalue()


def write_tar_gz(out: BinaryIO, members: dict[str, Member], mode: int = 0o755, level: int = 6) -> None:
    with (
        gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=MTIME, compresslevel=level) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name.rstrip("/"))  # "./" becomes "."
            info.mode, info.mtime = mode, MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(data, Path):
                info.size = data.stat().st_size
                with data.open("rb") as f:
                    tar.addfile(info, f)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
