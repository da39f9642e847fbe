"""Release files over HTTP(S): a few at once, each resumed from the `.part` file an interrupted run left, with
a line when a file starts, passes each quarter of its size and ends. Proxies come from the environment
(HTTPS_PROXY, HTTP_PROXY, NO_PROXY), as urllib reads them."""

from __future__ import annotations

import http.client
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

WORKERS = 4  # parallel downloads: enough to fill a link, few enough for a mirror's connection limits
CHUNK = 1 << 20
TIMEOUT = 60  # seconds without a byte before a download is given up (its .part is kept for the next run)
PROGRESS_FROM = 8 << 20  # files smaller than this get no intermediate progress lines
MIB = 1 << 20


@dataclass(frozen=True)
class Fetched:
    url: str
    path: Path
    error: str | None = None  # None: the file is complete at `path`
    network: bool = False  # the error is the way there (DNS, connection, proxy), not the server's answer
    resumed_from: int = 0


def part_of(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _resume_start(response: http.client.HTTPResponse) -> int | None:
    """The offset a 206 answer starts at (Content-Range: bytes START-END/TOTAL)."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def fetch(
    url: str,
    path: Path,
    log: Callable[[str], None] = print,
    opener: urllib.request.OpenerDirector | None = None,
    timeout: float = TIMEOUT,
) -> Fetched:
    """Download `url` to `path` through `path.part`: a part left by an earlier attempt is resumed with a Range
    request when the server honours it (206), else downloaded again (200). On a network error the part stays for
    the next run; the caller deletes the file if it fails its checksum."""
    partial = part_of(path)
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    start = time.monotonic()
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=timeout) as response:
            resumed = response.status == 206 and _resume_start(response) == have
            offset = have if resumed else 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length and length.isdigit() else None
            log(f"fetching {url}" + (f" (resuming at {offset / MIB:.1f} MiB)" if offset else ""))
            written = _copy(response, partial, offset, total, path.name, log)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # the part does not fit the file the server has now: start over next time
            partial.unlink(missing_ok=True)
        return Fetched(url, path, f"HTTP {exc.code} {exc.reason}")
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Fetched(url, path, str(reason) or type(exc).__name__, network=True)
    if total is not None and written != total:
        return Fetched(url, path, f"connection closed at {written} of {total} bytes", network=True)
    partial.rename(path)
    log(f"fetched {path.name}: {written / MIB:.1f} MiB in {time.monotonic() - start:.1f} s")
    return Fetched(url, path, resumed_from=offset)


def _copy(
    response: http.client.HTTPResponse,
    partial: Path,
    offset: int,
    total: int | None,
    name: str,
    log: Callable[[str], None],
) -> int:
    """Append (from `offset`) or write the body to `partial`; returns the part's size afterwards."""
    written = offset
    quarter = 1 + 4 * offset // total if total and total >= PROGRESS_FROM else 4
    with partial.open("ab" if offset else "wb") as out:
        while chunk := response.read(CHUNK):
            out.write(chunk)
            written += len(chunk)
            while total and quarter < 4 and written >= total * quarter // 4:
                log(f"  {name}: {25 * quarter}% of {total / MIB:.1f} MiB")
                quarter += 1
    return written


def fetch_all(
    jobs: list[tuple[str, Path]], log: Callable[[str], None] = print, workers: int = WORKERS
) -> list[Fetched]:
    """Each (url, path) fetched, `workers` at a time; results in the order of `jobs`. Log lines from the
    threads are whole lines (one lock)."""
    lock = threading.Lock()
    opener = urllib.request.build_opener()  # reads the proxy variables now, not when urllib was first used

    def say(line: str) -> None:
        with lock:
            log(line)

    def one(job: tuple[str, Path]) -> Fetched:
        url, path = job
        path.parent.mkdir(parents=True, exist_ok=True)
        return fetch(url, path, say, opener)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        return list(pool.map(one, jobs))
