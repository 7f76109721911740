"""A change to the code executor, measured on the whole chain: this tree against the same tree with a git
revision's ``services/code_execution`` (``--paths`` for others), both traced, side by side in one run.

The machine is shared and its load drifts by a quarter over minutes: the two chains take turns (sequential
``print(1)`` completions alternate between them; throughput rounds run back to back, the ratio within each
round counts), so both see the same machine state. The baseline chain runs from a copy of this tree
(without .venv and .git) whose ``--paths`` are replaced by the revision's.

    .venv/bin/python -m benchmarks.code_execution_ab [--revision HEAD] [--runs 60] [--rounds 4] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.chain_bench import (
    Side,
    analyse_traces,
    measure,
    otlp_receiver,
    stats,
    uid_bases,
    unmount_sessions,
)
from benchmarks.git_archive import extract
from services import launcher
from services.launcher import Chain

COPY_IGNORED = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".callstack", "node_modules")


def baseline_tree(into: Path, revision: str, paths: list[str]) -> Path:
    """This tree, with ``paths`` as they are at ``revision``."""
    shutil.copytree(launcher.REPO, into, ignore=COPY_IGNORED)
    for path in paths:
        shutil.rmtree(into / path, ignore_errors=True)
    return extract(revision, paths, into)


@contextlib.contextmanager
def chains(tmp: Path, baseline_repo: Path, endpoint: str) -> Iterator[list[Side]]:
    uids = uid_bases()
    sides = [Side(name, Chain(tmp / name, ephemeral_ports=True, env={
        "FLLM_CODE_UID_BASE": uid, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})) for name, uid in zip(
        ("baseline", "current"), uids, strict=True)]
    real = launcher.REPO
    try:
        launcher.REPO = baseline_repo  # the folder its services are started from (cwd and PYTHONPATH)
        sides[0].chain.start()
        launcher.REPO = real
        sides[1].chain.start()
        yield sides
    finally:
        launcher.REPO = real
        for side in sides:
            side.chain.stop()
            unmount_sessions(side.chain)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="code-execution-ab-") as tmp, otlp_receiver() as endpoint:
        baseline_repo = baseline_tree(Path(tmp) / "repo", args.revision, args.paths)
        with chains(Path(tmp), baseline_repo, endpoint) as sides:
            asyncio.run(measure(sides, args))
        result: dict[str, Any] = {}
        for side in sides:
            traces = analyse_traces(side, side.chain.data_dir / "traces.jsonl")
            result[side.name] = {
                "e2e": stats(side.e2e_ms), "chain_overhead_p50_ms": traces["overhead"].get("p50_ms"),
                "throughput_per_s": round(statistics.median(side.rates), 2),
                "rates": [round(rate, 2) for rate in side.rates], "failures": side.failures,
                "completions": side.completions, "per_hop_self_p50_ms": traces["per_hop_self_p50_ms"],
            }
    baseline, current = sides
    result["e2e_p50_ratio"] = round(result["current"]["e2e"]["p50_ms"] / result["baseline"]["e2e"]["p50_ms"], 3)
    result["throughput_ratio"] = round(statistics.median(
        c / b for b, c in zip(baseline.rates, current.rates, strict=True)), 3)
    result["settings"] = {"revision": args.revision, "paths": args.paths, "runs": args.runs, "rounds": args.rounds,
                          "seconds": args.seconds, "concurrency": args.concurrency}
    return result


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--revision", default="HEAD", help="git revision of the baseline's --paths")
    cli.add_argument("--paths", nargs="+", default=["services/code_execution"], help="what the baseline takes from it")
    cli.add_argument("--runs", type=int, default=60, help="sequential completions per chain")
    cli.add_argument("--warmup", type=int, default=5)
    cli.add_argument("--rounds", type=int, default=4, help="throughput rounds per chain (alternating)")
    cli.add_argument("--seconds", type=float, default=6.0)
    cli.add_argument("--concurrency", type=int, default=8)
    cli.add_argument("--json", action="store_true")
    args = cli.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        for name in ("baseline", "current"):
            side = result[name]
            print(f"{name:9} e2e p50 {side['e2e']['p50_ms']:7.2f} ms  p95 {side['e2e']['p95_ms']:7.2f} ms  "
                  f"throughput {side['throughput_per_s']:6.2f}/s {side['rates']}  failures {side['failures']}")
            print(f"{'':9} self time per hop (p50 ms): {side['per_hop_self_p50_ms']}")
        print(f"current / baseline: e2e p50 x{result['e2e_p50_ratio']}, throughput x{result['throughput_ratio']} "
              "(median of the rounds' ratios)")
    return 0 if result["baseline"]["failures"] + result["current"]["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
