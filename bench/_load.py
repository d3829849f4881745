"""A closed-loop HTTP load generator for loopback servers: threads, one keep-alive
connection each, every request bounded in count and the whole run in time.

It uses the standard library's ``http.client`` rather than httpx: on a
two-core machine the generator shares the CPU with the server it measures,
and the lighter it is, the less it flatters a slow server against a fast one.
Ours and the ceiling are driven by the same generator with the same settings.
"""

from __future__ import annotations

import http.client
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["LoadResult", "percentile", "post_all"]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    ok: int
    errors: int
    seconds: float
    latencies_ms: tuple[float, ...]  # of the successful requests
    first_error: str | None
    #: The positions in ``bodies`` of the requests answered with the expected status.
    acknowledged: tuple[int, ...] = ()

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 0.50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 0.99)


def post_all(
    port: int,
    path: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    max_seconds: float,
    expect: int = 201,
    timeout: float = 30.0,
    host: str = "127.0.0.1",
    keep_alive: bool = False,
    method: str = "POST",
) -> LoadResult:
    """POST (or ``method``) each of ``bodies`` once (fewer if ``max_seconds`` runs out) from
    ``concurrency`` threads; a status other than ``expect`` counts as an error.

    Each request has a connection of its own, as securecomm's clients do
    (one ``ServiceClient`` per call), unless ``keep_alive``: then each thread
    keeps one connection, and the server's workers keep the connections
    they accepted at the start, however unevenly they shared them out.
    """
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError("the load generator only targets loopback")
    lock = threading.Lock()
    position = 0
    latencies: list[float] = []
    errors: list[str] = []
    answered: list[int] = []
    ready = threading.Barrier(concurrency + 1)
    stop_at = [math.inf]
    headers = {
        "Content-Type": "application/json",
        "Connection": "keep-alive" if keep_alive else "close",
    }

    def take() -> int | None:
        nonlocal position
        with lock:
            if position >= len(bodies) or time.perf_counter() >= stop_at[0]:
                return None
            position += 1
            return position - 1

    def connect() -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection.connect()
        return connection

    def worker() -> None:
        mine: list[float] = []
        failed: list[str] = []
        done: list[int] = []
        connection: http.client.HTTPConnection | None = None
        if keep_alive:
            try:
                connection = connect()
            except OSError as exc:
                failed.append(f"connect: {exc}")
        ready.wait()
        while (index := take()) is not None:
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = connect()
                connection.request(method, path, body=bodies[index] or None, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                if response.will_close or not keep_alive:
                    connection.close()
                    connection = None
                if response.status == expect:
                    mine.append((time.perf_counter() - started) * 1000)
                    done.append(index)
                else:
                    failed.append(f"HTTP {response.status}: {payload[:200]!r}")
            except (OSError, http.client.HTTPException) as exc:
                failed.append(f"{type(exc).__name__}: {exc}")
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()
        with lock:
            latencies.extend(mine)
            errors.extend(failed)
            answered.extend(done)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    stop_at[0] = started + max_seconds
    for thread in threads:
        thread.join(max_seconds + timeout + 5)
    seconds = time.perf_counter() - started
    with lock:
        return LoadResult(
            concurrency,
            len(latencies),
            len(errors),
            seconds,
            tuple(latencies),
            errors[0] if errors else None,
            tuple(sorted(answered)),
        )


def run_threads(
    function: Callable[[int], float], *, concurrency: int, count: int, max_seconds: float
) -> tuple[list[float], list[str], float]:
    """Call ``function(i)`` for i in 0..count-1 from ``concurrency`` threads until done or
    out of time; return the durations it returned (ms), the errors, and the wall time."""
    lock = threading.Lock()
    position = 0
    durations: list[float] = []
    errors: list[str] = []
    stop_at = time.perf_counter() + max_seconds

    def take() -> int | None:
        nonlocal position
        with lock:
            if position >= count or time.perf_counter() >= stop_at:
                return None
            position += 1
            return position - 1

    def worker() -> None:
        while (index := take()) is not None:
            try:
                value = function(index)
            except Exception as exc:  # a failed call is counted, not raised
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                durations.append(value)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_seconds + 120)
    return durations, errors, time.perf_counter() - started
