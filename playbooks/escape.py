"""Values written into the files kubefab renders, each in its own format's syntax.

Templates pass text through a filter for the format of the place it lands (`toml`, `yaml`, `sh`,
`unit_setting`); anything written bare must be plain: `plain` (the templates' `finalize`) refuses bare text
holding a character that could end a string, a line or a word in any of the formats (quote, space, newline,
`#`, `$`, `%`, `\\`, `;`, braces). So a value that got past validation still cannot change what a file
means: rendering fails.
"""

from __future__ import annotations

import json
import re
import shlex

# Bare text: no character that any of TOML, YAML, env files, systemd units, HAProxy, keepalived or a shell
# gives a meaning.
PLAIN = re.compile(r"[A-Za-z0-9._:/,=@+*-]*", re.ASCII)
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


class Escaped(str):
    """Text already written in its destination's syntax by one of the filters below."""


class UnsafeValue(ValueError):
    pass


def plain(value: object) -> object:
    """Every `{{ ... }}` output: escaped text, or text made only of PLAIN characters (numbers and addresses
    are)."""
    if isinstance(value, Escaped):
        return value
    text = value if isinstance(value, str) else str(value)
    if not PLAIN.fullmatch(text):
        raise UnsafeValue(f"{text[:80]!r} holds characters that need escaping for this file")
    return value


def toml(value: str) -> Escaped:
    """A TOML basic string."""
    out = "".join(_TOML_ESCAPES.get(ch, f"\\u{ord(ch):04x}" if _control(ch) else ch) for ch in value)
    return Escaped(f'"{out}"')


def _control(ch: str) -> bool:
    return ord(ch) < 0x20 or ord(ch) == 0x7F


def yaml(value: str) -> Escaped:
    """A YAML double-quoted scalar (JSON's string syntax is a subset of it)."""
    return Escaped(json.dumps(value))


def sh(value: str) -> Escaped:
    """One word of a POSIX shell command."""
    return Escaped(shlex.quote(value))


_UNIT_SETTING = re.compile(r"[^\x00-\x1f\x7f\\%\"']*", re.ASCII)


def unit_setting(value: str) -> Escaped:
    """The value of a systemd unit setting (`OnCalendar=...`): spaces are part of it; a control character, a
    backslash, a quote or `%` (systemd's specifiers) would change its meaning, and are refused."""
    if not _UNIT_SETTING.fullmatch(value):
        raise UnsafeValue(f"{value[:80]!r} holds characters a systemd setting would read differently")
    return Escaped(value)


FILTERS = {"toml": toml, "yaml": yaml, "sh": sh, "unit_setting": unit_setting}
