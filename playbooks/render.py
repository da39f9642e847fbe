"""Jinja2 rendering of `templates/<component>/<file>.j2`. Undefined variables are errors, never blanks."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from kubefab.playbooks import escape

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=escape.plain,
    )
    env.filters.update(escape.FILTERS)
    return env


class RenderError(ValueError):
    pass


def render(template: str, **context: Any) -> bytes:
    try:
        return environment().get_template(template).render(**context).encode()
    except escape.UnsafeValue as exc:
        raise RenderError(f"{template}: {exc}") from None
