"""A probe of the lab cluster's API through the VIP while something changes underneath (an upgrade): GET /readyz
and a LIST every 200 ms, each on a new TLS connection (so a request can land on any apiserver HAProxy picks),
with the cluster's CA (both during a CA rotation) and the admin certificate; every failure kept with its time
and reason. Used by the lab tests and benchmarks of upgrade, membership and certificates; it only talks to the
lab's VIP."""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from kubefab.pki.store import trusted
from kubefab.playbooks.model import Cluster

PATHS = ("/readyz", "/api/v1/namespaces/default/pods?limit=5")


@dataclass
class Probe:
    """`call` every `interval` seconds in a thread, from `with` to its end; `sent` counts requests."""

    call: Callable[[], int]  # returns the requests it made; raises on a failure
    interval: float = 0.2
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sent += self.call()
            except Exception as exc:  # every kind of failure counts, each as one failed request
                self.sent += 1
                when = datetime.now().strftime("%H:%M:%S.%f")[:-3]  # to the millisecond, to set beside journals
                self.failures.append(f"{when} {type(exc).__name__}: {exc}")
            self._stop.wait(self.interval)

    def report(self, shown: int = 20) -> str:
        """The failure count and the first `shown` failures, as the benchmarks print them."""
        lines = [f"API probe through the VIP: {len(self.failures)} failed of {self.sent} requests"]
        return "\n".join(lines + [f"  {failure}" for failure in self.failures[:shown]])

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def api_probe(cluster: Cluster, timeout: float = 5) -> Probe:
    pki = cluster.dir / "pki"

    def call() -> int:
        # Credentials read at each round, as kubectl reads its kubeconfig at each run: a CA rotation replaces them
        # (both CAs, then the new one alone) while the probe runs.
        tls = ssl.create_default_context(cadata=trusted(cluster, "ca").decode())
        tls.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        for path in PATHS:
            conn = http.client.HTTPSConnection(str(cluster.api.vip), cluster.api.port, context=tls, timeout=timeout)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
            finally:
                conn.close()
        return len(PATHS)

    return Probe(call)
