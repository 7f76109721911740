"""Where the cost of tracing goes: CPU per completion in each service, traced and untraced side by side,
and the traced chain's telemetry stage by stage (benchmarks/telemetry_cost.py, put in each service process by
benchmarks/cost_hook/sitecustomize.py).

Two chains as in chain_bench.py (traced: OTLP/HTTP to a local receiver, as a deployment traced to a
collector, and with ``--telemetry-file`` the embedded traces.jsonl exporter too; untraced:
``OTEL_SDK_DISABLED=true``), both with ``FLLM_TELEMETRY_COST=on``. After a warm-up, every service starts
a measurement (SIGUSR1), the chains answer ``--runs`` sequential ``print(1)`` completions each (taking
turns), and every service writes what it measured (SIGUSR2). The stage wrappers cost time of their own:
the figures say where the time goes, not what a chain without them spends (chain_bench.py says that).

    .venv/bin/python -m benchmarks.tracing_cost [--runs 60] [--telemetry-file] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.chain_bench import Side, ask, side_by_side
from benchmarks.otlp_sink import otlp_receiver
from services.auth.client_tokens import bearer_source
from services.common.settings import DEFAULT_INSTANCE_ID
from services.portal.client import PortalClient


def _signal_all(side: Side, signum: int) -> None:
    for service in side.chain.services.values():
        if service.process is not None:
            os.kill(service.process.pid, signum)


async def _measure(sides: list[Side], runs: int, warmup: int) -> None:
    for side in sides:
        side.client = PortalClient(side.chain.url("core_api"), DEFAULT_INSTANCE_ID, timeout_s=60,
                                   bearer=bearer_source(side.chain.data_dir))
    try:
        for _ in range(warmup):
            for side in sides:
                await ask(side)
        await asyncio.sleep(1.5)  # the warm-up's spans exported, its sessions' interpreters replaced
        for side in sides:
            _signal_all(side, signal.SIGUSR1)
            side.completions = side.failures = 0
        await asyncio.sleep(0.2)
        for run in range(runs):
            for side in sides if run % 2 == 0 else reversed(sides):
                answer = await ask(side)
                if answer is not None:
                    side.e2e_ms.append(answer[0])
        await asyncio.sleep(1.5)  # the last spans exported (the OTLP batches go out a second apart)
        for side in sides:
            _signal_all(side, signal.SIGUSR2)
    finally:
        for side in sides:
            assert side.client is not None
            await side.client.aclose()


def _reports(side: Side, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    expected = {service.process.pid for service in side.chain.services.values() if service.process is not None}
    deadline = time.monotonic() + timeout_s
    while True:
        files = {path for path in side.chain.data_dir.glob("telemetry-cost-*.json")}
        if len(files) >= len(expected) or time.monotonic() > deadline:
            return [json.loads(path.read_text()) for path in sorted(files)]
        time.sleep(0.05)


def _summary(side: Side) -> dict[str, Any]:
    completions = max(1, side.completions)
    per_service: dict[str, float] = {}
    stages: dict[str, dict[str, float]] = {}
    for report in _reports(side):
        per_service[report["service"]] = round(report["process_cpu_s"] / completions * 1000, 2)
        if report.get("children_cpu_s", 0.0) > 0:
            per_service[f"{report['service']} (children)"] = round(report["children_cpu_s"] / completions * 1000, 2)
        for stage, (calls, seconds) in report["stages"].items():
            total = stages.setdefault(stage, {"calls": 0.0, "cpu_ms": 0.0})
            total["calls"] += calls / completions
            total["cpu_ms"] += seconds / completions * 1000
    return {
        "completions": side.completions,
        "failures": side.failures,
        "e2e_p50_ms": round(statistics.median(side.e2e_ms), 2) if side.e2e_ms else None,
        "cpu_ms_per_completion": round(sum(per_service.values()), 2),
        "cpu_ms_per_completion_by_service": dict(sorted(per_service.items(), key=lambda item: -item[1])),
        "stages_per_completion": {name: {"calls": round(v["calls"], 1), "cpu_ms": round(v["cpu_ms"], 2)}
                                  for name, v in sorted(stages.items(), key=lambda item: -item[1]["cpu_ms"])},
    }


def _hook_path() -> str:
    """The service processes import the cost hook (this folder's cost_hook) and the project."""
    here = Path(__file__).resolve().parent
    return os.pathsep.join([str(here / "cost_hook"), str(here.parent)])


def run(runs: int, warmup: int, telemetry_file: bool = False) -> dict[str, Any]:
    env = {"FLLM_TELEMETRY_COST": "on", "PYTHONPATH": _hook_path()}
    with tempfile.TemporaryDirectory(prefix="tracing-cost-") as tmp, otlp_receiver() as endpoint, \
            side_by_side(Path(tmp), endpoint, env, telemetry_file) as sides:
        asyncio.run(_measure(sides, runs, warmup))
        result = {side.name: _summary(side) for side in sides}
    result["tracing_cpu_ms_per_completion"] = round(
        result["traced"]["cpu_ms_per_completion"] - result["untraced"]["cpu_ms_per_completion"], 2)
    return result


def print_text(result: dict[str, Any]) -> None:
    traced, untraced = result["traced"], result["untraced"]
    print(f"CPU per completion, all services: traced {traced['cpu_ms_per_completion']} ms, untraced "
          f"{untraced['cpu_ms_per_completion']} ms: tracing {result['tracing_cpu_ms_per_completion']} ms "
          f"({traced['completions']} and {untraced['completions']} completions, "
          f"{traced['failures'] + untraced['failures']} failures)")
    print(f"\n{'service':22}{'traced ms':>12}{'untraced ms':>14}")
    for service, value in traced["cpu_ms_per_completion_by_service"].items():
        print(f"{service:22}{value:12.2f}{untraced['cpu_ms_per_completion_by_service'].get(service, 0.0):14.2f}")
    print(f"\n{'traced stage':28}{'calls':>8}{'CPU ms':>10}")
    for stage, figures in traced["stages_per_completion"].items():
        print(f"{stage:28}{figures['calls']:8.1f}{figures['cpu_ms']:10.2f}")


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--runs", type=int, default=60, help="sequential completions per chain")
    cli.add_argument("--warmup", type=int, default=8, help="completions per chain before measuring")
    cli.add_argument("--telemetry-file", action="store_true",
                     help="the traced chain writes traces.jsonl too (its exporter's cost among the stages)")
    cli.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = cli.parse_args()
    result = run(args.runs, args.warmup, args.telemetry_file)
    if args.json:
        print(json.dumps(result))
    else:
        print_text(result)
    return 0 if result["traced"]["failures"] + result["untraced"]["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
