"""Time the whole PKI of a 3 etcd + 3 control-plane + 100 worker cluster: kubefab (ECDSA P-256 and RSA-2048)
against the book's procedure for the same certificates with the openssl CLI (genrsa, req, x509 per certificate).

    python benchmarks/certificates.py [--workers 100] [--skip-openssl]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from kubefab.pki.profiles import authorities, identities
from kubefab.pki.store import ensure
from kubefab.playbooks.inventory import load
from kubefab.playbooks.model import Cluster


def inventory(root: Path, workers: int, algorithm: str) -> Cluster:
    hosts = [
        {"name": f"cp-{i}", "ip": f"10.10.0.{10 + i}", "roles": ["etcd", "control_plane", "lb"]} for i in range(1, 4)
    ]
    hosts += [
        {"name": f"node-{i}", "ip": f"10.10.{1 + i // 250}.{i % 250 + 1}", "roles": ["worker"]} for i in range(workers)
    ]
    doc = {
        "name": "bench",
        "kubernetes_version": "1.35",
        "cluster_dir": str(root / "cluster"),
        "network": {"host_prefix": 16},
        "api": {"vip": "10.10.0.100"},
        "certificates": {"algorithm": algorithm},
        "hosts": hosts,
    }
    (root / "inv.yaml").write_text(yaml.safe_dump(doc))
    return load(root / "inv.yaml")


def kubefab_seconds(workers: int, algorithm: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = inventory(Path(tmp), workers, algorithm)
        start = time.perf_counter()
        rows = ensure(cluster)
        return time.perf_counter() - start, sum(r.action in ("issued", "created") for r in rows)


def openssl_seconds(workers: int) -> tuple[float, int]:
    """The book's way: per certificate a key (genrsa 2048), a CSR (req) and a signature (x509 -req)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cluster = inventory(root, workers, "rsa-2048")
        start = time.perf_counter()
        count = 0
        for ca in {a.file: a for a in authorities(cluster)}.values():
            base = root / ca.file.replace("/", "-")
            _sh("genrsa", "-out", f"{base}.key", "2048")
            _sh(
                "req",
                "-x509",
                "-new",
                "-key",
                f"{base}.key",
                "-subj",
                f"/CN={ca.common_name}",
                "-days",
                "3650",
                "-out",
                f"{base}.crt",
            )
            count += 1
        ca_base = {a.name: root / a.file.replace("/", "-") for a in authorities(cluster)}
        for ident in identities(cluster):
            base = root / ident.file.replace("/", "-")
            subject = "".join(f"/O={o}" for o in ident.request.organizations) + f"/CN={ident.request.common_name}"
            sans = [f"DNS:{d}" for d in ident.request.dns_names] + [f"IP:{i}" for i in ident.request.ip_addresses]
            ext = root / "ext.cnf"
            ext.write_text(
                "extendedKeyUsage="
                + ",".join(f"{u}Auth" for u in ident.request.usages)
                + "\n"
                + (f"subjectAltName={','.join(sans)}\n" if sans else "")
            )
            ca = ca_base[ident.authority]
            _sh("genrsa", "-out", f"{base}.key", "2048")
            _sh("req", "-new", "-key", f"{base}.key", "-subj", subject, "-out", f"{base}.csr")
            _sh(
                "x509",
                "-req",
                "-in",
                f"{base}.csr",
                "-CA",
                f"{ca}.crt",
                "-CAkey",
                f"{ca}.key",
                "-CAcreateserial",
                "-days",
                "365",
                "-extfile",
                str(ext),
                "-out",
                f"{base}.crt",
            )
            count += 1
        return time.perf_counter() - start, count


def _sh(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--skip-openssl", action="store_true")
    args = parser.parse_args()
    ecdsa, n = kubefab_seconds(args.workers, "ecdsa-p256")
    rsa, _ = kubefab_seconds(args.workers, "rsa-2048")
    print(f"3 etcd + 3 control plane + {args.workers} workers: {n} certificates and keys (+ kubeconfigs)")
    print(f"kubefab ECDSA P-256   {ecdsa:8.3f} s")
    print(f"kubefab RSA-2048      {rsa:8.3f} s")
    if not args.skip_openssl:
        book, count = openssl_seconds(args.workers)
        print(f"openssl CLI RSA-2048  {book:8.3f} s  ({count} certificates, genrsa + req + x509 each)")
        print(f"ratio openssl / kubefab ECDSA: {book / ecdsa:.0f}x; openssl / kubefab RSA: {book / rsa:.1f}x")


if __name__ == "__main__":
    main()
