"""Deterministic .tar.gz: sorted members, fixed owner and mtime, no gzip timestamp or name, so the same
files always give the same bytes (and the bundle's checksums stay stable across rebuilds)."""

from __future__ import annotations

import gzip
import io
import tarfile

MTIME = 0


def tar_gz(members: dict[str, bytes | None], mode: int = 0o755) -> bytes:
    """Archive name -> content (None for a directory, whose name ends in '/')."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", mtime=MTIME, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name.rstrip("/"))  # "./" becomes "."
            info.mode, info.mtime = mode, MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
