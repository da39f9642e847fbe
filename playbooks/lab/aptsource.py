"""The Debian mirror and suite, read from the machine's own apt configuration (never written in code)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

APT_DIR = Path("/etc/apt")


@dataclass(frozen=True)
class AptSource:
    mirror: str
    suite: str


def parse_deb822(text: str) -> list[dict[str, str]]:
    """Stanzas of a deb822 .sources file as field -> value (comments dropped)."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current = {}
        elif line[0] in " \t" and key:
            current[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            current[key.strip().lower()] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def parse_one_line(text: str) -> list[dict[str, str]]:
    """`deb [opts] URI suite components` lines, in the same shape as deb822 stanzas."""
    stanzas = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] != ["deb"]:
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words.pop(0)
            words.pop(0)
        if len(words) >= 3:
            stanzas.append({"types": "deb", "uris": words[0], "suites": words[1], "components": " ".join(words[2:])})
    return stanzas


def pick_source(stanzas: list[dict[str, str]]) -> AptSource | None:
    """The first binary source of a release suite (not -updates/-security) carrying `main`."""
    for s in stanzas:
        if "deb" not in s.get("types", "").split() or "main" not in s.get("components", "").split():
            continue
        if s.get("enabled", "yes").lower() == "no":
            continue
        suites = [x for x in s.get("suites", "").split() if "-" not in x and "/" not in x]
        uris = s.get("uris", "").split()
        if suites and uris:
            return AptSource(mirror=uris[0], suite=suites[0])
    return None


def machine_source(apt_dir: Path = APT_DIR) -> AptSource:
    stanzas: list[dict[str, str]] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        stanzas += parse_deb822(path.read_text())
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            stanzas += parse_one_line(path.read_text())
    source = pick_source(stanzas)
    if source is None:
        raise RuntimeError(f"no Debian release suite with `main` found in {apt_dir}/sources.list(.d)")
    return source
