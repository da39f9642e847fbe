"""Paths built from values: each value one file name, so none can name a place outside its root."""

from __future__ import annotations

import posixpath


class PathEscape(ValueError):
    pass


def join(root: str, *names: str) -> str:
    """`root/name/...`, refusing a name that is empty, `.` or `..`, or holds `/` or a NUL byte."""
    for name in names:
        if name in ("", ".", "..") or "/" in name or "\x00" in name:
            raise PathEscape(f"{name!r} is not one file name under {root}")
    return posixpath.join(root, *names)


def check_absolute(path: str) -> str:
    """An absolute, normalised path (no `..`, `.`, `//`, NUL or newline): what a plan may install to."""
    if not path.startswith("/") or posixpath.normpath(path) != path or "\x00" in path or "\n" in path:
        raise PathEscape(f"{path!r} is not an absolute normalised path")
    return path
