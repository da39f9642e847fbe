"""`fab import-inventory SRC --out FILE`: a kubeasz or kubespray inventory as a kubefab one, with the report of
what became of every setting. The work is in playbooks.importers."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kubefab.playbooks import ui
from kubefab.playbooks.importers import FORMATS, SourceError, convert, document
from kubefab.playbooks.inventory import validate


@task(
    name="import-inventory",
    auto_shortflags=False,
    positional=["src"],
    help={
        "src": "the Ansible inventory: a kubeasz hosts file, a kubespray hosts.yaml or inventory.ini, or their "
        "directory",
        "out": "the kubefab inventory to write",
        "tool": f"the source's format ({' or '.join(FORMATS)}); default: told by its groups",
        "name": "the cluster name (default: kubeasz's CLUSTER_NAME, or the inventory's directory)",
        "force": "replace OUT if it exists",
    },
)
def import_inventory(
    ctx: Context, src: str, out: str = "", tool: str | None = None, name: str | None = None, force: bool = False
) -> None:
    """Convert an Ansible inventory; print what was mapped, derived, defaulted and ignored; validate the result."""
    if not out:
        raise Exit("--out FILE is required: the kubefab inventory to write", code=2)
    path = Path(out)
    if path.exists() and not force:
        raise Exit(f"{path} exists: pass --force to replace it", code=2)
    try:
        imported = convert(Path(src), tool, name)
    except SourceError as exc:
        raise Exit(f"{exc}\nnothing was written", code=1) from None
    text, _ = document(imported, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    # Escaped: sources name sections in brackets ([bastion]), which rich would take for markup.
    ui.table(
        f"import of {imported.source} ({imported.format})",
        ["what", "source", "kubefab field", "value / why"],
        imported.report.rows(),
    )
    verdict = validate(path)
    ui.problems(verdict.problems)
    todo = [f"fill in {e.target}" for e in imported.report.of("missing")]
    todo += [] if verdict.ok else ["fix the problems listed"]
    if todo:
        raise Exit(
            f"{path}: written, NOT VALID YET (the file's header says the same): {'; '.join(todo)}; then run "
            f"`kubefab inventory.check --inventory {path}`",
            code=1,
        )
    ui.out.print(
        f"{path}: valid, {len(imported.data['hosts'])} hosts. Review the report above, then\n"
        f"  kubefab inventory.check --inventory {path}"
    )
