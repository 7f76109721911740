"""Response time of the portal's trace views on a big traces.jsonl (default 10,000 traces = 150,000 spans).

Generates the file as ``latency_bench`` does (chain-shaped traces, each spread over many batch lines),
starts the portal as its own process on loopback over that data directory, and times over HTTP:
the first request (which indexes the file), the recent-operations list (first and a deep page), one
trace's waterfall (random traces), the latency report of the newest 2,000 traces, and the pages
themselves; then appends 1,000 more traces and times the request that indexes just those.

    .venv/bin/python benchmarks/portal_trace_bench.py [--traces 10000] [--requests 30]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from benchmarks.latency_bench import generate

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def _timed(call: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def _line(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"  {label:<44} n={len(samples):<3} p50 {statistics.median(ordered):8.1f} ms  p95 {p95:8.1f} ms  "
          f"max {ordered[-1]:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30, help="requests per measured route")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        path = data_dir / "traces.jsonl"
        spans = generate(path, args.traces)
        print(f"trace file: {args.traces:,} traces, {spans:,} spans, {sum(1 for _ in path.open()):,} lines, "
              f"{path.stat().st_size / 2**20:,.1f} MiB")
        port = _free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("FLLM_", "OTEL_"))},
               "FLLM_DATA_DIR": str(data_dir), "FLLM_PORT": str(port), "FLLM_TELEMETRY_FILE": "off",
               "FLLM_CORE_API_URL": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"}
        process = subprocess.Popen([sys.executable, "-m", "services.portal"], cwd=REPO, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=120, trust_env=False) as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if http.get("/status").status_code == 200:
                            break
                    except httpx.HTTPError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                print(f"portal up, RSS {_rss_mib(process.pid):.0f} MiB; response times over loopback HTTP:")
                _line("first request (the start-up index may still run)", [_timed(lambda: http.get("/api/traces"))])
                print(f"  portal RSS after indexing: {_rss_mib(process.pid):.0f} MiB")
                _line("GET /traces (page)", [_timed(lambda: http.get("/traces")) for _ in range(args.requests)])
                _line("GET /api/traces (newest 25 operations)",
                      [_timed(lambda: http.get("/api/traces")) for _ in range(args.requests)])
                pages, cursor = [], None
                for _ in range(args.requests):  # walk back page by page: new summaries every time
                    params = {"limit": 25, **({"before_ns": cursor} if cursor else {})}
                    started = time.perf_counter()
                    answer = http.get("/api/traces", params=params)
                    pages.append((time.perf_counter() - started) * 1000)
                    cursor = answer.json()["next_before_ns"]
                _line("GET /api/traces?before_ns= (older pages)", pages)
                ids = [row["trace_id"] for row in http.get("/api/traces", params={"limit": 200}).json()["operations"]]
                rng = random.Random(1)
                sample = [ids[rng.randrange(len(ids))] for _ in range(args.requests)]
                _line("GET /api/traces/{id} (a waterfall)", [_timed(lambda t=t: http.get(f"/api/traces/{t}"))
                                                             for t in sample])
                _line("GET /api/latency?window=all (2,000 traces, cold)",
                      [_timed(lambda: http.get("/api/latency", params={"window": "all"}))])
                _line("GET /api/latency?window=all (cached)",
                      [_timed(lambda: http.get("/api/latency", params={"window": "all"})) for _ in range(5)])
                more = data_dir / "more.jsonl"
                generate(more, 1000, seed=11)
                with path.open("a") as handle, more.open() as extra:
                    handle.write(extra.read())
                _line("first request after 1,000 traces appended", [_timed(lambda: http.get("/api/traces"))])
                print(f"  portal RSS at the end: {_rss_mib(process.pid):.0f} MiB")
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
