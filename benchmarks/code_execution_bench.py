"""Latency and throughput of code execution at the Dynamic Sessions emulator, over real HTTP.

Starts two emulator processes side by side (a warm pool of 2, and no pool) on loopback sockets and
measures, from an httpx client:

1. a new session's first execution, warm pool vs cold (pool size 0); the warm case waits for the
   pool to refill between runs, so every sample is a pool hit;
2. ``print(1)`` on a warm session (its sandbox already started);
3. the same while another session leaves a busy ``setsid`` daemon behind (held to its own CPU quota);
4. executions per second with concurrent clients on separate sessions (client and server share the
   machine's cores).

    .venv/bin/python benchmarks/code_execution_bench.py [--runs 200] [--seconds 5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
API = "2024-10-02-preview"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Emulator:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def emulator(pool_size: int, data_dir: Path, telemetry: bool) -> Iterator[Emulator]:
    # A free port rather than an inherited socket (FLLM_FD): uvicorn wraps an inherited descriptor as
    # AF_UNIX, so asyncio leaves Nagle on for its TCP connections and every answer waits ~40 ms.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FLLM_", "OTEL_"))},
        "FLLM_PORT": str(port),
        "FLLM_DATA_DIR": str(data_dir),
        "FLLM_DYNAMIC_SESSIONS_TOKEN": TOKEN,
        "FLLM_CODE_POOL_SIZE": str(pool_size),
        "FLLM_TELEMETRY_FILE": "on" if telemetry else "off",
    }
    process = subprocess.Popen([sys.executable, "-m", "services.dynamic_sessions"], cwd=REPO, env=env)
    server = Emulator(f"http://127.0.0.1:{port}", process)
    try:
        wait_for_pool(server.url, pool_size)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)


def wait_for_pool(url: str, size: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status = httpx.get(f"{url}/status", timeout=2).json()
            if status["warm_pool"]["ready"] >= size:
                return
        except (httpx.HTTPError, KeyError):
            pass
        time.sleep(0.005)
    raise TimeoutError("the warm pool did not fill")


def execute(client: httpx.Client, identifier: str, code: str) -> float:
    body = {"codeInputType": "Inline", "executionType": "Synchronous", "code": code}
    started = time.perf_counter()
    response = client.post(f"/executions?api-version={API}&identifier={identifier}", json=body, headers=HEADERS)
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or response.json()["status"] != "Succeeded":
        raise RuntimeError(f"execution failed: {response.status_code} {response.text[:300]}")
    return elapsed


def delete(client: httpx.Client, identifier: str) -> None:
    client.delete(f"/session?api-version={API}&identifier={identifier}", headers=HEADERS)


def first_executions(server: Emulator, runs: int, pool_size: int, code: str = "print(1)") -> list[float]:
    samples = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(runs):
            if pool_size:
                wait_for_pool(server.url, pool_size)
            identifier = f"bench-{uuid.uuid4().hex}"
            samples.append(execute(client, identifier, code))
            delete(client, identifier)
    return samples


def warm_session(server: Emulator, runs: int) -> list[float]:
    identifier = f"bench-{uuid.uuid4().hex}"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(20):
            execute(client, identifier, "print(1)")
        samples = [execute(client, identifier, "print(1)") for _ in range(runs)]
        delete(client, identifier)
    return samples


PANDAS = "import pandas"  # the data-analysis set is in every session; nothing is pre-imported by default
BUSY_DAEMON = "import os\nif os.fork() == 0:\n    os.setsid()\n    while True:\n        pass\nprint(1)"


def warm_session_beside_a_daemon(server: Emulator, runs: int) -> list[float]:
    busy = f"bench-{uuid.uuid4().hex}"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        execute(client, busy, BUSY_DAEMON)
        try:
            return warm_session(server, runs)
        finally:
            delete(client, busy)  # the daemon ends with its session


async def throughput(server: Emulator, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    body = {"codeInputType": "Inline", "executionType": "Synchronous", "code": "print(1)"}
    latencies: list[float] = []
    identifiers = [f"bench-{uuid.uuid4().hex}" for _ in range(concurrency)]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:

        async def one(identifier: str) -> None:
            started = time.perf_counter()
            response = await client.post(f"/executions?api-version={API}&identifier={identifier}", json=body,
                                         headers=HEADERS)
            if response.status_code != 200:
                raise RuntimeError(response.text[:300])
            latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one(identifier) for identifier in identifiers))  # attach every session first
        latencies.clear()
        deadline = time.perf_counter() + seconds

        async def worker(identifier: str) -> int:
            count = 0
            while time.perf_counter() < deadline:
                await one(identifier)
                count += 1
            return count

        started = time.perf_counter()
        counts = await asyncio.gather(*(worker(identifier) for identifier in identifiers))
        elapsed = time.perf_counter() - started
        for identifier in identifiers:
            await client.delete(f"/session?api-version={API}&identifier={identifier}", headers=HEADERS)
    return sum(counts) / elapsed, latencies


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return (f"median {statistics.median(ordered) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms   "
            f"min {ordered[0] * 1000:6.2f} ms   n={len(ordered)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="samples per latency figure")
    parser.add_argument("--cold-runs", type=int, default=60, help="samples for the cold start (slower)")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the throughput run")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients (one session each)")
    parser.add_argument("--no-telemetry", action="store_true", help="no span/metric file export in the emulator")
    args = parser.parse_args()

    print(f"cores: {os.cpu_count()}   python: {sys.version.split()[0]}   telemetry: "
          f"{'off' if args.no_telemetry else 'file export'}")
    with tempfile.TemporaryDirectory() as warm_dir, tempfile.TemporaryDirectory() as cold_dir, \
            emulator(2, Path(warm_dir), not args.no_telemetry) as warm, \
            emulator(0, Path(cold_dir), not args.no_telemetry) as cold:
        sandbox = httpx.get(f"{warm.url}/status").json().get("sandbox", {})
        print(f"sandbox: {sandbox}")
        rows = [
            ("new session, first print(1), warm pool (2)", first_executions(warm, args.runs, 2)),
            ("new session, first print(1), cold (pool 0)", first_executions(cold, args.cold_runs, 0)),
            ("new session, first `import pandas`, warm pool", first_executions(warm, args.cold_runs, 2, PANDAS)),
            ("print(1) on a warm session", warm_session(warm, args.runs)),
            ("print(1), warm, busy daemon in another session", warm_session_beside_a_daemon(warm, args.runs)),
        ]
        rate, latencies = asyncio.run(throughput(warm, args.seconds, args.concurrency))
        rows.append((f"print(1) under load, {args.concurrency} clients", latencies))
    for label, samples in rows:
        print(f"{label:<48} {summary(samples)}")
    print(f"{'throughput, ' + str(args.concurrency) + ' sessions in parallel':<48} {rate:7.0f} executions/s")


if __name__ == "__main__":
    main()
