"""Load through the real chain: N concurrent completions per round, several rounds, nothing lost.

    python -m benchmarks.load [--concurrency 200] [--rounds 3] [--dead-telemetry] [--agent code-interpreter]
    python -m benchmarks.load --total 3000 --concurrency 64 --rounds 1   # sustained: back to back

Starts every service as its own process on loopback (ephemeral ports, a fresh data dir), submits N
code prompts at once to Core API (as the portal does: POST, then long-poll the status), and reports per
round and overall:

- completed / failed: as State API's store records each operation's end (the truth, once every accepted
  operation has ended or been failed by the sweeper), beside what the client saw (a poll can fail while
  the operation goes on);
- lost: accepted by Core but, after the settle wait, not ended in State API's store or ended without its
  final result (must be 0);
- broken traces: every operation's trace, read back from traces.jsonl, must be one connected tree that
  reaches the code execution (must be 0);
- p50 / p95 / max end-to-end latency (submission to the end seen by the client);
- RSS (psutil) of every service before and after each round: growth across rounds must stay bounded
  (the code interpreters of the sessions are reported apart: one per session, bounded by the pool's
  max sessions and reclaimed after the idle cooldown).
- the code-interpreter pool's live sessions (the emulator's ``/status``), sampled while the load runs:
  each completion's session is deleted when the completion is done with it, so the count stays near the
  number of completions in flight, far below the pool's 600, with the pool's own cooldown (300 s).

``--total N`` keeps ``--concurrency`` completions in flight until N were submitted (each worker submits
its next one as soon as the last ended): sustained load rather than bursts.

``--dead-telemetry`` points OTEL_EXPORTER_OTLP_ENDPOINT at a closed port: requests must not fail, memory
must stay bounded, and the OTLP export failures the services logged are counted (the spans of those
batches are dropped; the embedded traces.jsonl still gets every span).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from services.auth.local_issuer import LocalIssuer
from services.common.settings import DEFAULT_INSTANCE_ID, service_name
from services.launcher import Chain
from services.registry import default_path

CODE = "Run this:\n```python\nprint('load {token}', sum(range(1000)))\n```"
EXPECTED = "load {token} 499500"
# Every hop a default completion crosses but the portal (load submits to Core itself).
CHAIN_SERVICES = {service_name(package) for package in default_path("core_api")}


@dataclass
class Result:
    operation_id: str
    token: str
    trace_id: str
    parent_span_id: str  # the client's own span id in the traceparent it sent: the trace's root is its child
    status: str = "Lost"  # what the client saw
    seconds: float = 0.0
    error: str = ""


@dataclass
class Round:
    results: list[Result] = field(default_factory=list)
    rss_before: dict[str, float] = field(default_factory=dict)
    rss_after: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    pool_sessions: list[int] = field(default_factory=list)  # the emulator's live sessions, sampled


async def sample_pool_sessions(chain: Chain, samples: list[int], every_s: float = 0.5) -> None:
    """The code-interpreter pool's session count (GET /status of the emulator) until cancelled."""
    url = f"{chain.url('dynamic_sessions')}/status"
    async with httpx.AsyncClient(timeout=5.0) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                samples.append(int((await client.get(url)).json()["sessions"]))
            await asyncio.sleep(every_s)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(chain: Chain) -> dict[str, float]:
    """RSS of every service process; the code interpreters a service runs are counted with it."""
    sizes: dict[str, float] = {}
    for package, service in chain.services.items():
        if service.process is None:
            continue
        try:
            process = psutil.Process(service.process.pid)
            own = process.memory_info().rss
            kids = process.children(recursive=True)
        except psutil.Error:
            continue
        children = 0
        for child in kids:  # an interpreter may end while it is counted
            with contextlib.suppress(psutil.Error):
                children += child.memory_info().rss
        sizes[service_name(package)] = own / 2**20
        if children:
            sizes[f"{service_name(package)} (+interpreters)"] = (own + children) / 2**20
    return sizes


async def one(client: httpx.AsyncClient, base: str, agent: str, timeout_s: float) -> Result:
    token = secrets.token_hex(6)
    result = Result(f"op-{token}", token, secrets.token_hex(16), secrets.token_hex(8))
    started = time.monotonic()
    try:
        traceparent = f"00-{result.trace_id}-{result.parent_span_id}-01"  # the operation's trace, known here
        request = {"user_prompt": CODE.format(token=token), "agent_name": agent, "session_id": f"conv-{token}",
                   "operation_id": result.operation_id}
        answer = await client.post(base, headers={"traceparent": traceparent}, json=request)
        if answer.status_code != 202:
            result.status, result.error = "Failed", f"submit answered {answer.status_code}: {answer.text[:200]}"
            return result
        body = answer.json()
        while body["status"] == "InProgress" and time.monotonic() - started < timeout_s:
            reply = await client.get(f"{base}/{result.operation_id}/status", params={"wait": 10})
            body = reply.json()
        if body["status"] == "InProgress":
            result.error = "still InProgress at the deadline"
            return result
        result.status = body["status"]
        text = (body.get("result") or {}).get("text", "")
        if result.status == "Completed" and EXPECTED.format(token=token) not in text:
            result.status, result.error = "Failed", f"wrong answer: {text[:200]}"
        elif result.status == "Failed":
            result.error = f"{body.get('failed_hop')}: {body.get('status_message')}"[:300]
    except httpx.HTTPError as error:
        result.status, result.error = "Failed", f"{type(error).__name__}: {error}"
    finally:
        result.seconds = time.monotonic() - started
    return result


async def run_round(chain: Chain, concurrency: int, agent: str, timeout_s: float, total: int = 0) -> Round:
    """``concurrency`` completions at once; with ``total``, that many in flight until ``total`` were sent."""
    base = f"{chain.url('core_api')}/instances/{DEFAULT_INSTANCE_ID}/async-completions"
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency,
                          keepalive_expiry=2.0)
    round_ = Round(rss_before=rss_mb(chain))
    started = time.monotonic()
    token = LocalIssuer.load(chain.data_dir).mint()  # the Core API's bearer token (`callstack token`)
    async with httpx.AsyncClient(timeout=httpx.Timeout(180.0, connect=10.0), limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        sampler = asyncio.get_running_loop().create_task(sample_pool_sessions(chain, round_.pool_sessions))
        try:
            if total:
                remaining = [total]

                async def worker() -> list[Result]:
                    done = []
                    while remaining[0] > 0:
                        remaining[0] -= 1
                        done.append(await one(client, base, agent, timeout_s))
                    return done

                batches = await asyncio.gather(*(worker() for _ in range(min(concurrency, total))))
                round_.results = [result for batch in batches for result in batch]
            else:
                round_.results = list(await asyncio.gather(*(one(client, base, agent, timeout_s)
                                                             for _ in range(concurrency))))
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    round_.wall_s = time.monotonic() - started
    round_.rss_after = rss_mb(chain)
    return round_


def store_outcomes(chain: Chain, results: list[Result], settle_s: float) -> tuple[dict[str, str], set[str]]:
    """Each accepted operation's end as the stores hold it (State API's, or Core's own for a start that
    failed at State API), waiting up to ``settle_s`` for the ones still running (or about to be failed by
    the sweeper); and the lost ones: accepted by Core, but ended nowhere, or Completed without a final
    result."""
    ids = {r.operation_id for r in results}
    deadline = time.monotonic() + settle_s
    while True:
        with sqlite3.connect(chain.data_dir / "core_api.db") as db:
            contexts = list(db.execute("SELECT id, final FROM operation_contexts"))
        accepted = {op for op, _ in contexts if op in ids}
        # A start that failed at State API itself is ended in Core only (its final answer, Failed).
        ended_in_core = {op: json.loads(final)["status"] for op, final in contexts if op in ids and final}
        with sqlite3.connect(chain.data_dir / "state_api.db") as db:
            ended = dict(db.execute("SELECT operation_id, status FROM operations WHERE status != 'InProgress'"))
            final = {row[0] for row in db.execute("SELECT operation_id FROM results WHERE id LIKE '%-final'")}
        ended = {**{op: status for op, status in ended_in_core.items() if status == "Failed"},
                 **{op: status for op, status in ended.items() if op in ids}}
        # A start that failed before LangChain is ended by Orchestration without a LangChain result.
        lost = {op for op in accepted if op not in ended or (ended[op] == "Completed" and op not in final)}
        if not lost or time.monotonic() > deadline:
            return ended, lost
        time.sleep(1.0)


def broken_traces(traces_file: Path, results: list[Result], stored: dict[str, str]) -> list[str]:
    """Traces that are not one connected tree (reaching every hop of the code path when Completed)."""
    spans: dict[str, list[dict[str, Any]]] = defaultdict(list)
    wanted = {r.trace_id for r in results if r.trace_id}
    with traces_file.open() as lines:
        for line in lines:
            for resource_spans in json.loads(line).get("resourceSpans", []):
                service = next((a["value"].get("stringValue") for a in resource_spans["resource"]["attributes"]
                                if a["key"] == "service.name"), "")
                for scope in resource_spans.get("scopeSpans", []):
                    for span in scope.get("spans", []):
                        if span["traceId"] in wanted:
                            spans[span["traceId"]].append({**span, "service": service})
    broken = []
    for result in results:
        trace = spans.get(result.trace_id, [])
        ids = {s["spanId"] for s in trace}
        roots = [s for s in trace if s.get("parentSpanId", "") in ("", result.parent_span_id)]
        orphans = [s for s in trace if s not in roots and s.get("parentSpanId") not in ids]
        services = {s["service"] for s in trace}
        incomplete = stored.get(result.operation_id) == "Completed" and not services >= CHAIN_SERVICES
        if len(roots) != 1 or orphans or incomplete:
            broken.append(f"{result.operation_id}: {len(roots)} roots, {len(orphans)} orphans, "
                          f"missing {sorted(CHAIN_SERVICES - services)}")
    return broken


def export_failures(chain: Chain) -> int:
    count = 0
    for service in chain.services.values():
        if service.log_path.exists():
            text = service.log_path.read_text(errors="replace")
            count += text.count("Failed to export") + text.count("Transient error")
    return count


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(index: int, round_: Round, stored: dict[str, str], lost: set[str], broken: list[str]) -> None:
    seconds = [r.seconds for r in round_.results if r.status == "Completed"]
    seen = defaultdict(int)
    for r in round_.results:
        seen[r.status] += 1
    truth = defaultdict(int)
    for status in stored.values():
        truth[status] += 1
    print(f"round {index}: {len(round_.results)} operations in {round_.wall_s:.1f} s "
          f"({len(round_.results) / max(round_.wall_s, 1e-9):.1f}/s)")
    print(f"  stored: completed {truth['Completed']}  failed {truth['Failed']}  lost {len(lost)}  "
          f"broken traces {len(broken)}")
    print(f"  client saw: completed {seen['Completed']}  failed {seen['Failed']}  no end seen {seen['Lost']}")
    if seconds:
        print(f"  end-to-end latency: p50 {percentile(seconds, 0.5) * 1000:.0f} ms  "
              f"p95 {percentile(seconds, 0.95) * 1000:.0f} ms  max {max(seconds) * 1000:.0f} ms  "
              f"mean {statistics.mean(seconds) * 1000:.0f} ms")
    if round_.pool_sessions:
        print(f"  code-interpreter pool sessions while it ran: max {max(round_.pool_sessions)}  "
              f"mean {statistics.mean(round_.pool_sessions):.1f}  at the end {round_.pool_sessions[-1]}  "
              f"({len(round_.pool_sessions)} samples; the pool's limit is 600)")
    errors = [r.error for r in round_.results if r.error][:5]
    for error in errors:
        print(f"  e.g. {error}")
    for line in broken[:3]:
        print(f"  broken: {line}")
    print("  RSS MB before -> after: " + ", ".join(
        f"{name} {round_.rss_before.get(name, 0):.0f}->{mb:.0f}" for name, mb in sorted(round_.rss_after.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agent", default="code-interpreter")
    parser.add_argument("--timeout", type=float, default=300.0, help="per operation, seconds")
    parser.add_argument("--dead-telemetry", action="store_true", help="OTLP endpoint at a closed port")
    parser.add_argument("--pool-size", default="4", help="FLLM_CODE_POOL_SIZE (warm interpreters)")
    parser.add_argument("--data-dir", help="default: a new temporary directory")
    parser.add_argument("--total", type=int, default=0,
                        help="sustained load: keep --concurrency in flight until this many were submitted")
    parser.add_argument("--cooldown", type=float, default=None,
                        help="FLLM_CODE_COOLDOWN_S: idle session expiry (default: the pool's own, 300 s)")
    parser.add_argument("--settle", type=float, default=150.0, help="seconds to wait for every operation to end")
    parser.add_argument("--rss-growth-mb", type=float, default=150.0,
                        help="bound on any service's RSS growth from the end of round 1 to the end")
    args = parser.parse_args(argv)

    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="fllm-load-"))
    env = {"FLLM_CODE_POOL_SIZE": args.pool_size, "FLLM_LOG_LEVEL": "WARNING", "FLLM_OPERATION_STALE_AFTER_S": "180"}
    if args.cooldown is not None:
        env["FLLM_CODE_COOLDOWN_S"] = str(args.cooldown)
    if args.dead_telemetry:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    else:
        os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    print(f"chain data: {data_dir}  concurrency {args.concurrency}  rounds {args.rounds}  "
          f"telemetry backend {'DEAD (' + env['OTEL_EXPORTER_OTLP_ENDPOINT'] + ')' if args.dead_telemetry else 'file'}")
    chain = Chain(data_dir, ephemeral_ports=True, env=env).start()
    totals: dict[str, int] = defaultdict(int)
    peak_sessions = 0
    after_first: dict[str, float] = {}
    last: dict[str, float] = {}
    all_seconds: list[float] = []
    try:
        print(f"RSS MB at start: {', '.join(f'{k} {v:.0f}' for k, v in sorted(rss_mb(chain).items()))}")
        for index in range(1, args.rounds + 1):
            round_ = asyncio.run(run_round(chain, args.concurrency, args.agent, args.timeout, args.total))
            stored, lost = store_outcomes(chain, round_.results, args.settle)
            time.sleep(1.0)  # the last batches of spans reach traces.jsonl
            broken = broken_traces(data_dir / "traces.jsonl", [r for r in round_.results if r.operation_id in stored],
                                   stored)
            report(index, round_, stored, lost, broken)
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                settled = int(httpx.get(f"{chain.url('dynamic_sessions')}/status", timeout=5).json()["sessions"])
                print(f"  code-interpreter pool sessions once every operation ended: {settled}")
            totals["completed"] += sum(status == "Completed" for status in stored.values())
            totals["failed"] += sum(status == "Failed" for status in stored.values())
            totals["client errors"] += sum(r.status != "Completed" for r in round_.results)
            totals["lost"] += len(lost)
            totals["broken"] += len(broken)
            all_seconds += [r.seconds for r in round_.results if r.status == "Completed"]
            peak_sessions = max([peak_sessions, *round_.pool_sessions])
            if index == 1:
                after_first = dict(round_.rss_after)
            last = dict(round_.rss_after)
    finally:
        failures = export_failures(chain)
        chain.stop()
    growth = {name: last.get(name, 0) - after_first.get(name, 0) for name in last if "interpreters" not in name}
    worst = max(growth.items(), key=lambda item: item[1]) if growth else ("-", 0.0)
    print("\nTOTAL: " + "  ".join(f"{k} {v}" for k, v in totals.items()))
    if all_seconds:
        print(f"end-to-end latency over all rounds: p50 {percentile(all_seconds, 0.5) * 1000:.0f} ms  "
              f"p95 {percentile(all_seconds, 0.95) * 1000:.0f} ms")
    print(f"code-interpreter pool sessions at most {peak_sessions} (limit 600)")
    print(f"largest RSS growth after round 1: {worst[0]} {worst[1]:+.0f} MB (bound {args.rss_growth_mb:.0f} MB)")
    if args.dead_telemetry:
        print(f"OTLP export failures logged by the services: {failures} (those batches' spans dropped; "
              f"traces.jsonl still complete)")
    ok = totals["lost"] == 0 and totals["broken"] == 0 and worst[1] <= args.rss_growth_mb
    if args.dead_telemetry:
        ok = ok and totals["failed"] == 0
    if args.total:  # sustained load must never exhaust the pool: no failure at all
        ok = ok and totals["failed"] == 0 and totals["client errors"] == 0 and peak_sessions < 600
    print("OK" if ok else "NOT OK")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
