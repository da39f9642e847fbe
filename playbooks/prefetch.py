"""Binaries travel to the hosts while earlier phases wait on daemons (etcd's quorum, keepalived's VRRP timer,
apiserver readiness): sent gzipped into a private temporary directory on each host and unpacked there. They
are installed only by their own phase, which moves the staged copy into place instead of uploading it.
Nothing is installed early, and a failed or unfinished transfer just means the phase uploads the file itself."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from kubefab.playbooks.apply import local_sha256
from kubefab.playbooks.bundle import compressed, extracted
from kubefab.playbooks.model import Host
from kubefab.playbooks.plan import Binary
from kubefab.playbooks.remote import Remote, StepFailed


class Prefetch:
    def __init__(self, remote: Callable[[Host], Remote], bundle: Path, stop: threading.Event) -> None:
        self.remote = remote
        self.bundle = bundle
        self.stop = stop
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="prefetch")
        self.futures: dict[str, Future[None]] = {}
        self.dirs: dict[Host, str] = {}
        self.cancelled = threading.Event()
        # Each binary is usable as soon as it is unpacked on its host: a phase waits for its own binaries,
        # not for the later phases' (Kubernetes' six are hundreds of MB behind etcd's).
        self.ready: dict[str, dict[str, str]] = {}
        self.finished: set[str] = set()
        self.changed = threading.Condition()

    def start(self, wanted: dict[Host, list[Binary]]) -> None:
        for host, found in wanted.items():
            self.ready[host.name] = {}
            future = self.pool.submit(self._stage, host, found)
            future.add_done_callback(lambda _, name=host.name: self._finish(name))
            self.futures[host.name] = future

    def _finish(self, name: str) -> None:
        with self.changed:
            self.finished.add(name)
            self.changed.notify_all()

    def _stage(self, host: Host, found: list[Binary]) -> None:
        """Stage, in phase order, the binaries the host does not have yet; each is in self.ready once unpacked."""
        remote = self.remote(host)
        unique = {local_sha256(extracted(self.bundle, b)): b for b in found}
        sizes = remote.run(
            "prefetch: installed sizes",
            "; ".join(f"stat -c %s {b.path} 2>/dev/null || echo -" for b in unique.values()),
        ).stdout.split()
        todo = {
            sha: b
            for (sha, b), size in zip(unique.items(), sizes, strict=True)
            if size != str(extracted(self.bundle, b).stat().st_size)
        }
        if not todo:
            return
        directory = remote.run("prefetch: staging dir", "mktemp -d", as_root=False).stdout.strip()
        self.dirs[host] = directory
        for sha, b in todo.items():
            if self.stop.is_set() or self.cancelled.is_set():
                break
            remote.upload(f"prefetch: {b.path}", None, f"{directory}/{sha}.gz", str(compressed(self.bundle, b)))
            # Unpacked now too, so the phase that installs it only has to move it into place.
            remote.run(f"prefetch: unpack {b.path}", f"gzip -d {directory}/{sha}.gz", as_root=False)
            with self.changed:
                self.ready[host.name][sha] = f"{directory}/{sha}"
                self.changed.notify_all()

    def staged(self, host: Host, binaries: list[Binary]) -> dict[str, str]:
        """sha256 -> staged copy on `host` of those of `binaries` the prefetch sends, waiting only until they are
        there (or its transfers to the host ended: what failed or was never sent is uploaded by the phase)."""
        if host.name not in self.futures:
            return {}
        wanted = {local_sha256(extracted(self.bundle, b)) for b in binaries}
        with self.changed:
            self.changed.wait_for(lambda: wanted <= self.ready[host.name].keys() or host.name in self.finished)
            return {sha: path for sha, path in self.ready[host.name].items() if sha in wanted}

    def close(self) -> None:
        """Remove the staging directories (best effort: an unreachable host keeps its own in /tmp)."""
        self.cancelled.set()
        self.pool.shutdown(wait=True)
        for host, directory in self.dirs.items():
            with contextlib.suppress(StepFailed):
                self.remote(host).run("prefetch: clean up", f"rm -rf {directory}", check=False, timeout=15)
