"""Carry a Plan out on one host, changing only what differs. `assess` reads the host's state for the whole
plan in one SSH round trip; `execute` uploads changed files to a temp dir and installs them as root in one
shell, runs the steps whose check fails, and reports what changed and which services that notifies.
Services themselves are started and restarted by `playbooks.runner`, which orders them across hosts."""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from kubefab.playbooks.bundle import compressed, extracted
from kubefab.playbooks.plan import Binary, Block, Directory, File, Plan, Step
from kubefab.playbooks.remote import Remote, StepFailed

UNIT_DIR = "/etc/systemd/system/"
# Services whose files changed in a run that did not reach their phase (e.g. --only certificates): the next
# run that does restarts them. One name per line.
PENDING_RESTARTS = "/var/lib/kubefab/restart-pending"
# The SHA-256 of each binary kubefab installed, with the inode, size and ctime it had then (tab-separated). A
# binary whose stat still matches is not hashed again on the next run (hundreds of MB per node); any change to
# it, even in place or by a root user's `touch`, moves its ctime and brings the full hash back. What a line
# records was checked at install: gzip's CRC of the unpacked bytes, over SSH's authenticated transport.
BINARY_RECORD = "/var/lib/kubefab/binaries"
STAT_KEY = "stat -c '%i %s %z'"  # inode, size, ctime to the nanosecond


@dataclass(frozen=True)
class Stat:
    mode: int
    owner: str
    group: str
    sha256: str


@dataclass
class Assessment:
    """What differs between a host and a plan."""

    files: list[File] = field(default_factory=list)  # content differs or missing
    perms: list[File] = field(default_factory=list)  # content right, mode or owner wrong
    blocks: list[tuple[Block, str, str]] = field(default_factory=list)  # block, current file, new file
    binaries: list[Binary] = field(default_factory=list)
    directories: list[Directory] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    services: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (is-enabled, is-active)
    pending_restarts: set[str] = field(default_factory=set)  # left by an earlier run (PENDING_RESTARTS)
    unchanged: int = 0

    @property
    def count(self) -> int:
        return (
            len(self.files)
            + len(self.perms)
            + len(self.blocks)
            + len(self.binaries)
            + len(self.directories)
            + len(self.users)
            + len(self.steps)
        )

    @property
    def empty(self) -> bool:
        return self.count == 0


@dataclass
class Outcome:
    """What `execute` changed on one host."""

    changed: list[str] = field(default_factory=list)
    notified: set[str] = field(default_factory=set)
    units_changed: bool = False


@cache
def _local_sha256(path: Path, size: int, mtime: int) -> str:  # size and mtime: part of the cache key
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def local_sha256(path: Path) -> str:
    st = path.stat()
    return _local_sha256(path, st.st_size, st.st_mtime_ns)


def state_script(plan: Plan, record: str = BINARY_RECORD) -> str:
    """One shell script printing, tab-separated, the state of everything the plan touches."""
    q = shlex.quote
    lines = []
    hashed = '$(sha256sum < "$p" | cut -c1-64)'
    recorded = (
        f'$(awk -F \'\\t\' -v p="$p" -v k="$({STAT_KEY} "$p")" '
        f"'$1 == p && $2 == k {{h = $3}} END {{print h}}' {q(record)} 2>/dev/null)"
    )
    # Files are always hashed; a binary first looks for its install record (BINARY_RECORD).
    for path, known in [(f.path, "") for f in plan.files] + [(b.path, recorded) for b in plan.binaries]:
        lines.append(
            f'p={q(path)}; if [ -f "$p" ]; then h="{known}"; [ -n "$h" ] || h="{hashed}"; '
            f'printf \'F\\t%s\\t%s\\t%s\\n\' "$p" "$(stat -c \'%a:%U:%G\' "$p")" "$h"; '
            f"else printf 'F\\t%s\\t-\\t-\\n' \"$p\"; fi"
        )
    for d in plan.directories:
        lines.append(f'p={q(d.path)}; printf \'D\\t%s\\t%s\\n\' "$p" "$(stat -c \'%a:%U:%G\' "$p" 2>/dev/null)"')
    for b in plan.blocks:
        lines.append(f'p={q(b.path)}; printf \'B\\t%s\\t%s\\n\' "$p" "$(base64 -w0 "$p" 2>/dev/null)"')
    for user in plan.users:
        lines.append(f"id -u {q(user)} >/dev/null 2>&1 && printf 'U\\t%s\\n' {q(user)}")
    for i, step in enumerate(plan.steps):
        lines.append(
            f"if ( {step.unless} ) >/dev/null 2>&1; then printf 'S\\t{i}\\tok\\n'; else printf 'S\\t{i}\\trun\\n'; fi"
        )
    for s in plan.services:
        lines.append(
            f"printf 'V\\t%s\\t%s\\t%s\\n' {q(s)} \"$(systemctl is-enabled {q(s)} 2>/dev/null)\" "
            f'"$(systemctl is-active {q(s)} 2>/dev/null)"'
        )
    lines.append(f"printf 'R\\t%s\\n' \"$(cat {PENDING_RESTARTS} 2>/dev/null | tr '\\n' ' ')\"")
    return "\n".join(lines) + "\ntrue\n"


def parse_state(text: str) -> dict[str, dict]:
    state: dict[str, dict] = {"F": {}, "D": {}, "B": {}, "U": {}, "S": {}, "V": {}, "R": {}}
    for line in text.splitlines():
        kind, *rest = line.split("\t")
        if kind == "F" and len(rest) == 3:
            state["F"][rest[0]] = None if rest[1] == "-" else _stat(rest[1], rest[2])
        elif kind == "D" and len(rest) == 2:
            state["D"][rest[0]] = _stat(rest[1], "") if rest[1] else None
        elif kind == "B" and len(rest) == 2:
            state["B"][rest[0]] = base64.b64decode(rest[1]).decode() if rest[1] else ""
        elif kind == "U" and rest:
            state["U"][rest[0]] = True
        elif kind == "S" and len(rest) == 2:
            state["S"][int(rest[0])] = rest[1] == "ok"
        elif kind == "V" and len(rest) == 3:
            state["V"][rest[0]] = (rest[1], rest[2])
        elif kind == "R" and rest:
            state["R"] = dict.fromkeys(rest[0].split(), True)
    return state


def _stat(perm: str, sha: str) -> Stat:
    mode, owner, group = perm.split(":")
    return Stat(int(mode, 8), owner, group, sha)


def with_block(current: str, block: Block) -> str:
    """`current` with the block's marked region replaced, or the block appended when absent."""
    lines = current.splitlines(keepends=True)
    try:
        start, end = lines.index(block.begin + "\n"), lines.index(block.end + "\n")
    except ValueError:
        start = end = -1
    if 0 <= start < end:
        return "".join(lines[:start]) + block.text() + "".join(lines[end + 1 :])
    prefix = current if not current or current.endswith("\n") else current + "\n"
    return prefix + block.text()


def assess(remote: Remote, plan: Plan, bundle: Path) -> Assessment:
    state = parse_state(remote.run(f"{plan.component}: read host state", state_script(plan)).stdout)
    out = Assessment(services=state["V"], pending_restarts=set(state["R"]))
    for f in plan.files:
        have = state["F"].get(f.path)
        if have is None or have.sha256 != f.sha256:
            out.files.append(f)
        elif (have.mode, have.owner, have.group) != (f.mode, f.owner, f.group):
            out.perms.append(f)
        else:
            out.unchanged += 1
    for b in plan.binaries:
        have = state["F"].get(b.path)
        if have is None or have.sha256 != local_sha256(extracted(bundle, b)) or have.mode != b.mode:
            out.binaries.append(b)
        else:
            out.unchanged += 1
    for d in plan.directories:
        have = state["D"].get(d.path)
        if have is None or (have.mode, have.owner, have.group) != (d.mode, d.owner, d.group):
            out.directories.append(d)
        else:
            out.unchanged += 1
    for b in plan.blocks:
        current = state["B"].get(b.path, "")
        new = with_block(current, b)
        if new != current:
            out.blocks.append((b, current, new))
        else:
            out.unchanged += 1
    out.users = [u for u in plan.users if u not in state["U"]]
    out.unchanged += len(plan.users) - len(out.users)
    out.steps = [s for i, s in enumerate(plan.steps) if not state["S"].get(i, False)]
    out.unchanged += len(plan.steps) - len(out.steps)
    return out


@dataclass(frozen=True)
class _Upload:
    path: str
    mode: int
    owner: str
    group: str
    notifies: tuple[str, ...]
    content: bytes | None = None
    local: Path | None = None
    gzipped: bool = False
    on_host: str | None = None  # already on the host, unpacked (staged by playbooks.prefetch)
    sha256: str | None = None  # a binary's: recorded in BINARY_RECORD once it is in place

    def install(self, sent: str) -> str:
        """Shell to put the uploaded copy `sent` in place as root: written under a temporary name beside the
        target then renamed, so readers never see half a file and running binaries are replaced without
        "text file busy". A gzipped binary is unpacked straight there: one copy, not two."""
        q = shlex.quote
        staged, path = q(self.path + ".kubefab-new"), q(self.path)
        owner = f"{q(self.owner)}:{q(self.group)}"
        if self.on_host is not None:  # a rename when on the same filesystem, a copy otherwise
            return (
                f"mkdir -p {q(os.path.dirname(self.path))} && mv -f {q(self.on_host)} {staged} && "
                f"chmod {self.mode:04o} {staged} && chown {owner} {staged} && mv -f {staged} {path}"
            )
        if self.gzipped:
            return (
                f"mkdir -p {q(os.path.dirname(self.path))} && gzip -dc {sent} > {staged} && "
                f"chmod {self.mode:04o} {staged} && chown {owner} {staged} && mv -f {staged} {path}"
            )
        return (
            f"install -D -m {self.mode:04o} -o {q(self.owner)} -g {q(self.group)} {sent} {staged} "
            f"&& mv -f {staged} {path}"
        )


def install_script(uploads: list[tuple[_Upload, str]], record: str = BINARY_RECORD) -> str:
    """Shell installing each upload from where it was sent, then replacing the binaries' lines in `record`
    (path, stat key, SHA-256) in one rewrite."""
    q, rec = shlex.quote, shlex.quote(record)
    steps = [u.install(sent) for u, sent in uploads]
    binaries = [u for u, _ in uploads if u.sha256 is not None]
    if binaries:
        paths = "\\n".join(u.path for u in binaries)
        lines = "; ".join(
            f"printf '%s\\t%s\\t%s\\n' {q(u.path)} \"$({STAT_KEY} {q(u.path)})\" {u.sha256}" for u in binaries
        )
        steps.append(
            f"mkdir -p {q(os.path.dirname(record))} && {{ awk -F '\\t' -v ps={q(paths)} "
            f"'BEGIN {{n = split(ps, a, \"\\n\"); for (i = 1; i <= n; i++) skip[a[i]] = 1}} !($1 in skip)' "
            f"{rec} 2>/dev/null; {lines}; }} > {rec}.new && mv -f {rec}.new {rec}"
        )
    return " && ".join(steps)


def execute(
    remote: Remote, plan: Plan, found: Assessment, bundle: Path, staged: Mapping[str, str] | None = None
) -> Outcome:
    """Change what `assess` found different. `staged`: sha256 -> a gzipped copy already on the host
    (playbooks.prefetch), installed from there instead of uploaded."""
    q = shlex.quote
    out = Outcome()
    c = plan.component
    for user in found.users:
        remote.run(
            f"{c}: create user {user}",
            f"id -u {q(user)} >/dev/null 2>&1 || useradd --system "
            f"--no-create-home --user-group --shell /sbin/nologin {q(user)}",
        )
        out.changed.append(f"user {user}")
    if found.directories:
        remote.run(
            f"{c}: directories",
            " && ".join(
                f"install -d -m {d.mode:04o} -o {q(d.owner)} -g {q(d.group)} {q(d.path)}" for d in found.directories
            ),
        )
        out.changed += [f"directory {d.path}" for d in found.directories]
    uploads = [_Upload(f.path, f.mode, f.owner, f.group, f.notifies, content=f.content) for f in found.files]
    for b in found.binaries:
        sha = local_sha256(extracted(bundle, b))
        on_host = (staged or {}).get(sha)
        uploads.append(
            _Upload(
                b.path,
                b.mode,
                "root",
                "root",
                b.notifies,
                gzipped=on_host is None,
                local=None if on_host else compressed(bundle, b),
                on_host=on_host,
                sha256=sha,
            )
        )
    uploads += [_Upload(b.path, 0o644, "root", "root", (), content=new.encode()) for b, _, new in found.blocks]
    if uploads:
        tmp = remote.run(f"{c}: make upload dir", "mktemp -d", as_root=False).stdout.strip()
        try:
            for i, u in enumerate(uploads):
                if u.on_host is None:
                    remote.upload(f"{c}: upload {u.path}", u.content, f"{tmp}/{i}", str(u.local) if u.local else None)
            remote.run(
                f"{c}: install {len(uploads)} file(s)",
                install_script([(u, f"{tmp}/{i}") for i, u in enumerate(uploads)]),
            )
        finally:
            remote.run(f"{c}: remove upload dir", f"rm -rf {q(tmp)}", check=False)
        for u in uploads:
            out.changed.append(f"file {u.path}")
            out.notified |= set(u.notifies)
            out.units_changed |= u.path.startswith(UNIT_DIR)
    if found.perms:
        remote.run(
            f"{c}: modes and owners",
            " && ".join(
                f"chmod {f.mode:04o} {q(f.path)} && chown {q(f.owner)}:{q(f.group)} {q(f.path)}" for f in found.perms
            ),
        )
        for f in found.perms:
            out.changed.append(f"mode/owner {f.path}")
            out.notified |= set(f.notifies)
    for step in found.steps:
        # Checked again: an earlier step (packages, say) may have done this one's work already.
        if remote.run(f"{c}: check {step.name}", step.unless, check=False).ok:
            continue
        remote.run(f"{c}: {step.name}", step.run)
        out.changed.append(f"step {step.name}")
        out.notified |= set(step.notifies)
        # A step whose work does not show in its own check would run again on every deploy: fail it now.
        after = remote.run(f"{c}: check {step.name} took effect", step.unless, check=False)
        if not after.ok:
            raise StepFailed(
                remote.name,
                f"{c}: {step.name}: its check still fails after it ran",
                step.unless,
                after.stderr or after.stdout,
            )
    return out
