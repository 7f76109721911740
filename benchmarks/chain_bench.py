"""End-to-end latency of the whole chain, the cost of tracing, throughput, per-hop time, code execution.

Starts two copies of the real chain side by side (every service its own process on loopback): one
traced as a deployment traced to a collector is (OTLP/HTTP only, to a local receiver process that spools
the raw exports; the embedded traces.jsonl exporter off), one untraced (``OTEL_SDK_DISABLED=true``).
A ``print(1)`` prompt goes through Core API as the portal sends it (``PortalClient``: submit, then a
long-poll ``?wait=`` on the status), alternately to each chain, so both see the same machine load. Then:

1. end to end: submission until the client sees ``Completed``; split into the interpreter's own time
   (the duration of the ``code.execute`` span that times the run, to the microsecond; the data plane's
   ``code.execution.time_ms`` is whole milliseconds, 0 for ``print(1)``) and the chain overhead;
2. tracing overhead: median end to end, traced over untraced; throughput, traced over untraced within
   each round (the two chains back to back), the median over the rounds;
3. throughput: completions per second with ``concurrency`` clients (closed loop), failures counted;
4. per hop: median time each service adds to one completion (self time of its server and internal
   spans, from the receiver's spool decoded after the run into OTLP/JSON lines; status polls excluded);
5. code execution at the Dynamic Sessions emulator (benchmarks/code_execution_bench.py).

    .venv/bin/python benchmarks/chain_bench.py [--runs 60] [--seconds 8] [--concurrency 8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import host_speed
from benchmarks.otlp_sink import otlp_receiver, spool_to_jsonl
from services.auth.client_tokens import bearer_source
from services.code_execution.cgroups import CgroupLimits
from services.code_execution.sessions import SessionManager
from services.common.settings import DEFAULT_INSTANCE_ID
from services.launcher import Chain
from services.portal.client import PortalClient
from telemetry import conventions as c
from telemetry.analysis.latency import percentile, self_times
from telemetry.analysis.phases import execution_ms, is_poll_trace
from telemetry.analysis.trace_sources import FileSource

PROMPT = "Run this, please:\n```python\nprint(1)\n```"
CHAIN_ENV: dict[str, str] = {}  # the pool's own cooldown: each completion deletes its session when done


def uid_bases() -> tuple[str, str]:
    """Session uid ranges of their own for the two chains (FLLM_CODE_UID_BASE: two ranges from each, one per
    code service): an executor that ends a session SIGKILLs every process of its uid, so two executors
    sharing a range kill each other's code."""
    base = random.randrange(20, 30_000) * 65_536
    return str(base), str(base + 2 * 65_536)


@dataclass
class Side:
    """One chain and what was measured on it."""

    name: str
    chain: Chain
    client: PortalClient | None = None
    e2e_ms: list[float] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)
    seen_ns: list[int] = field(default_factory=list)  # wall clock when the client saw the end
    rates: list[float] = field(default_factory=list)
    failures: int = 0
    completions: int = 0


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {"p50_ms": round(statistics.median(ordered), 2), "p95_ms": round(percentile(ordered, 95), 2),
            "min_ms": round(ordered[0], 2), "n": len(ordered)}


async def ask(side: Side) -> tuple[float, str, int] | None:
    assert side.client is not None
    try:
        result = await side.client.ask(PROMPT, timeout_s=60)
    except Exception:  # noqa: BLE001 - a failure is counted, never hidden
        side.failures += 1
        return None
    if result.status != "Completed" or result.answer.strip() != "1":
        side.failures += 1
        return None
    side.completions += 1
    return result.total_ms, result.trace_id, time.time_ns()


async def latency(sides: list[Side], runs: int, warmup: int) -> None:
    """Sequential asks, alternating the chains (and which goes first), so load hits both alike."""
    for _ in range(warmup):
        for side in sides:
            await ask(side)
    for run in range(runs):
        for side in sides if run % 2 == 0 else reversed(sides):
            answer = await ask(side)
            if answer is not None:
                side.e2e_ms.append(answer[0])
                side.trace_ids.append(answer[1])
                side.seen_ns.append(answer[2])


async def load(side: Side, seconds: float, concurrency: int) -> float:
    """Completions per second with ``concurrency`` clients each asking again as soon as answered."""
    deadline = time.monotonic() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            if await ask(side) is not None:
                done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


async def measure(sides: list[Side], args: argparse.Namespace) -> None:
    for side in sides:
        side.client = PortalClient(side.chain.url("core_api"), DEFAULT_INSTANCE_ID, timeout_s=60,
                                   bearer=bearer_source(side.chain.data_dir))
    try:
        await latency(sides, args.runs, args.warmup)
        for round_no in range(args.rounds):
            for side in sides if round_no % 2 == 0 else reversed(sides):
                side.rates.append(await load(side, args.seconds, args.concurrency))
                await asyncio.sleep(1.0)  # let the exporters and the session reaper settle
    finally:
        for side in sides:
            assert side.client is not None
            await side.client.aclose()


def analyse_traces(side: Side, path: Path) -> dict[str, Any]:
    """Interpreter time per completion, chain overhead, the time each hop adds (median), and how long
    after the Completed status was stored the client saw it (the long-poll's answer)."""
    wanted = dict(zip(side.trace_ids, side.e2e_ms, strict=True))
    seen = dict(zip(side.trace_ids, side.seen_ns, strict=True))
    execution: list[float] = []
    overhead: list[float] = []
    seen_after: list[float] = []
    per_hop: dict[str, list[float]] = {}
    for trace in FileSource(path).traces():
        if trace.trace_id not in wanted or is_poll_trace(trace):
            continue
        executed = execution_ms(trace)
        if executed is not None:
            execution.append(executed)
            overhead.append(wanted[trace.trace_id] - executed)
        status_writes = [s.end_ns for s in trace.spans if s.kind == "SERVER" and s.service == c.STATE_API
                         and s.name.startswith("PUT ")]
        if status_writes:
            seen_after.append((seen[trace.trace_id] - max(status_writes)) / 1e6)
        selfs = self_times(trace)
        added: dict[str, float] = {}
        for span in trace.spans:
            if span.kind != "CLIENT":  # a client span's own time is the wire and the callee's queue
                added[span.service] = added.get(span.service, 0.0) + selfs[span.span_id] / 1e6
        for service, ms in added.items():
            per_hop.setdefault(service, []).append(ms)
    hops = {service: round(statistics.median(values), 2) for service, values in per_hop.items()}
    return {"execution": stats(execution), "overhead": stats(overhead), "seen_after": stats(seen_after),
            "per_hop_self_p50_ms": dict(sorted(hops.items(), key=lambda kv: -kv[1])),
            "traces_analysed": len(execution)}


def code_execution(runs: int, cold_runs: int) -> dict[str, Any]:
    from benchmarks.code_execution_bench import PANDAS, emulator, first_executions, warm_session

    def ms(samples: list[float]) -> dict[str, float]:
        return stats([s * 1000 for s in samples])

    with tempfile.TemporaryDirectory() as warm_dir, tempfile.TemporaryDirectory() as cold_dir, \
            emulator(2, Path(warm_dir), True) as warm, emulator(0, Path(cold_dir), True) as cold:
        return {"warm_session_print1": ms(warm_session(warm, runs)),
                "new_session_warm_pool": ms(first_executions(warm, runs, 2)),
                "new_session_cold": ms(first_executions(cold, cold_runs, 0)),
                "new_session_import_pandas": ms(first_executions(warm, cold_runs, 2, PANDAS))}


@contextlib.contextmanager
def side_by_side(data_dir: Path, otlp_endpoint: str, env: dict[str, str] | None = None,
                 telemetry_file: bool = False) -> Iterator[list[Side]]:
    """A traced chain (OTLP to ``otlp_endpoint``; with ``telemetry_file``, traces.jsonl too) and an untraced
    one, started; both stopped at the end (SIGTERM: the services flush their spans)."""
    uids = uid_bases()
    common = {**CHAIN_ENV, **(env or {})}
    sides = [
        Side("traced", Chain(data_dir / "traced", ephemeral_ports=True, env={
            **common, "FLLM_CODE_UID_BASE": uids[0], "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
            "FLLM_TELEMETRY_FILE": "on" if telemetry_file else "off"})),
        Side("untraced", Chain(data_dir / "untraced", ephemeral_ports=True, env={
            **common, "FLLM_CODE_UID_BASE": uids[1], "OTEL_SDK_DISABLED": "true"})),
    ]
    try:
        for side in sides:
            side.chain.start()
        yield sides
    finally:
        for side in sides:
            side.chain.stop()
            unmount_sessions(side.chain)


def unmount_sessions(chain: Chain) -> None:
    """Session tmpfs a code service left mounted: one still stopping when its chain gave up waiting (its next
    start would unmount them) would keep this run's folder from being removed."""
    SessionManager(chain.data_dir / "sessions", 1, 1.0, None, CgroupLimits(0, 0, 0), 0).unmount_all()


def run(args: argparse.Namespace) -> dict[str, Any]:
    host_before = host_speed.interpreter_start_cpu_ms()
    with tempfile.TemporaryDirectory(prefix="chain-bench-") as tmp:
        spool = Path(tmp) / "otlp-traces.spool"
        with otlp_receiver(spool) as endpoint, side_by_side(Path(tmp), endpoint) as sides:
            asyncio.run(measure(sides, args))
        host = host_speed.reading(host_before, host_speed.interpreter_start_cpu_ms())
        traced, untraced = sides
        decoded = Path(tmp) / "otlp-traces.jsonl"  # the receiver has exited: every export is in the spool
        spans = spool_to_jsonl(spool, decoded)
        traces = {**analyse_traces(traced, decoded), "spans_exported": spans}
    code = code_execution(args.code_runs, args.cold_runs) if args.code_runs else {}
    return report(traced, untraced, traces, code, args, host)


def report(traced: Side, untraced: Side, traces: dict[str, Any], code: dict[str, Any],
           args: argparse.Namespace, host: dict[str, Any]) -> dict[str, Any]:
    e2e, e2e_off = stats(traced.e2e_ms), stats(untraced.e2e_ms)
    rate, rate_off = statistics.median(traced.rates), statistics.median(untraced.rates)
    paired = [t / u for t, u in zip(traced.rates, untraced.rates, strict=True)]
    return {
        "e2e_p50_ms": e2e.get("p50_ms"),
        "e2e_p95_ms": e2e.get("p95_ms"),
        "chain_overhead_p50_ms": traces["overhead"].get("p50_ms"),
        "chain_overhead_p95_ms": traces["overhead"].get("p95_ms"),
        "execution_p50_ms": traces["execution"].get("p50_ms"),
        "execution_p95_ms": traces["execution"].get("p95_ms"),
        "seen_after_completed_p50_ms": traces["seen_after"].get("p50_ms"),
        "tracing_overhead_ratio": round(e2e["p50_ms"] / e2e_off["p50_ms"], 3),
        "throughput_per_s": round(rate, 2),
        # Each round runs the chains back to back: the ratio within a round sees one state of the machine
        # (this one's throughput drifts by a quarter over minutes); the median over the rounds.
        "throughput_ratio": round(statistics.median(paired), 3),
        "per_hop_self_p50_ms": traces["per_hop_self_p50_ms"],
        "code_exec_warm_p50_ms": code.get("warm_session_print1", {}).get("p50_ms"),
        "session_first_exec_p50_ms": code.get("new_session_warm_pool", {}).get("p50_ms"),
        "session_first_exec_cold_p50_ms": code.get("new_session_cold", {}).get("p50_ms"),
        "session_first_import_pandas_p50_ms": code.get("new_session_import_pandas", {}).get("p50_ms"),
        "untraced": {"e2e_p50_ms": e2e_off.get("p50_ms"), "e2e_p95_ms": e2e_off.get("p95_ms"),
                     "throughput_per_s": round(rate_off, 2)},
        "failures": traced.failures + untraced.failures,
        "completions": traced.completions + untraced.completions,
        "settings": {"runs": args.runs, "concurrency": args.concurrency, "seconds": args.seconds,
                     "rounds": args.rounds, "cores": os.cpu_count(), "traces_analysed": traces["traces_analysed"],
                     "spans_exported": traces.get("spans_exported"),
                     "rates_traced": [round(r, 2) for r in traced.rates],
                     "rates_untraced": [round(r, 2) for r in untraced.rates],
                     "host": host},
        "code_execution": code,
    }


def print_text(result: dict[str, Any]) -> None:
    s, off = result["settings"], result["untraced"]
    print(f"chain benchmark: print(1) prompt, {s['runs']} runs per chain, {s['cores']} cores, "
          f"{result['completions']} completions, {result['failures']} failures")
    print(f"host: {host_speed.describe(s['host'])}")
    print(f"end to end (traced)        median {result['e2e_p50_ms']:8.1f} ms   p95 {result['e2e_p95_ms']:8.1f} ms")
    print(f"  chain overhead           median {result['chain_overhead_p50_ms']:8.1f} ms   "
          f"p95 {result['chain_overhead_p95_ms']:8.1f} ms")
    print(f"  code execution           median {result['execution_p50_ms']:8.2f} ms   "
          f"p95 {result['execution_p95_ms']:8.2f} ms   ({c.SPAN_CODE_EXECUTE} span)")
    print(f"  client saw Completed     median {result['seen_after_completed_p50_ms']:8.1f} ms after State stored it"
          " (long-poll)")
    print(f"end to end (untraced)      median {off['e2e_p50_ms']:8.1f} ms   p95 {off['e2e_p95_ms']:8.1f} ms")
    print(f"tracing overhead           end to end x{result['tracing_overhead_ratio']:.3f}   "
          f"throughput x{result['throughput_ratio']:.3f}")
    print(f"throughput ({s['concurrency']} clients)     traced {result['throughput_per_s']:6.2f}/s   "
          f"untraced {off['throughput_per_s']:6.2f}/s   (rounds: {s['rates_traced']} / {s['rates_untraced']})")
    print("time each hop adds to one completion (median self time of its server and internal spans):")
    for service, ms in result["per_hop_self_p50_ms"].items():
        print(f"  {service:20} {ms:8.2f} ms")
    labels = {"warm_session_print1": "print(1) on a warm session", "new_session_warm_pool":
              "new session, first print(1), warm pool", "new_session_cold": "new session, first print(1), cold",
              "new_session_import_pandas": "new session, first import pandas"}
    for key, figures in result["code_execution"].items():
        print(f"{labels[key]:40} median {figures['p50_ms']:8.2f} ms   p95 {figures['p95_ms']:8.2f} ms")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=60, help="sequential completions per chain (latency)")
    parser.add_argument("--warmup", type=int, default=5, help="completions per chain before measuring")
    parser.add_argument("--concurrency", type=int, default=8, help="clients in the throughput runs")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of one throughput run")
    parser.add_argument("--rounds", type=int, default=5, help="throughput runs per chain (alternating)")
    parser.add_argument("--code-runs", type=int, default=60, help="samples per code execution figure (0: skip)")
    parser.add_argument("--cold-runs", type=int, default=20, help="samples of a cold session's first run")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def main(args: argparse.Namespace) -> int:
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_text(result)
    return 0 if result["failures"] == 0 else 1


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(cli)
    sys.exit(main(cli.parse_args()))
