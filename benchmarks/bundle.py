"""Building the default minor's release files and the lab's images from source: a cold build (empty Go module
and build caches, empty kubefab cache: what a fresh machine does) and a warm one (everything cached: what a second
`kubefab bundle --from-source` does). The cold run uses throw-away cache directories, so the machine's own
caches are neither used nor touched.

    python benchmarks/bundle.py [--skip-cold]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from kubefab.playbooks import components, images, source
from kubefab.playbooks.lab.bundle import lab_images, lab_stack, machine_arch
from kubefab.playbooks.versions import cni_release


def fill(bundle: Path, cache: Path, go: source.GoTool) -> tuple[float, list[source.Built]]:
    """What the lab bundle holds: the release files, flannel's manifest, then the images they name."""
    start = time.monotonic()
    stack, arch = lab_stack(), machine_arch()

    def log(line: str) -> None:
        print(f"  {line}", flush=True)

    releases = [*components.releases(None, stack, arch), cni_release("flannel", stack)]
    built = source.fill_bundle(bundle, releases, cache, go, log=log)
    built += images.fill_images(bundle, lab_images(stack, bundle), arch, cache, stack.kubernetes, go, log)
    return time.monotonic() - start, built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold", action="store_true", help="measure the warm run only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubefab-bench-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        if not args.skip_cold:
            env = {**os.environ, "GOCACHE": str(root / "gocache"), "GOMODCACHE": str(root / "gomod")}
            cold, built = fill(root / "bundle-cold", root / "cache", source.GoTool(env=env))
            print(
                f"cold: {cold:.0f} s; " + ", ".join(f"{b.component} {b.version} {b.seconds:.0f} s" for b in built),
                flush=True,
            )
            warm, built = fill(root / "bundle-cold-again", root / "cache", source.GoTool(env=env))
            assert all(b.cached for b in built)
            print(f"warm (same caches): {warm:.1f} s", flush=True)
        warm, built = fill(root / "bundle", source.cache_dir(), source.GoTool())
        print(f"warm (machine's caches): {warm:.1f} s, cached: {sum(b.cached for b in built)}/{len(built)}")


if __name__ == "__main__":
    main()
