"""Two revisions of the whole chain on the same host: ``callstack bench --json`` of a git revision and of this
tree, taking turns, and the ratio of their figures within each pair.

This shared machine's speed drifts by half between hours, so a figure measured on another day (an issue's
"49 completions/s") says little about today's. Measured side by side, the ratio carries over: with
``--base-throughput`` (and ``--base-overhead-ms``), the figures the base revision gave elsewhere, it prints what
this tree's ratio makes of them there. The base runs from ``git archive`` of its revision (its own services,
started with this venv's interpreter; ``PYTHONPATH`` puts its packages before the installed ones), so any
revision whose ``callstack bench --json`` prints these keys can be the base.

    .venv/bin/python -m benchmarks.revision_ab --base 7ae18d3 [--pairs 3] [--base-throughput 49] [--json]
        [-- <callstack bench options, e.g. --runs 30 --rounds 3>]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.git_archive import extract
from services.launcher import REPO

FIGURES = ("throughput_per_s", "chain_overhead_p50_ms", "e2e_p50_ms", "e2e_p95_ms", "failures", "completions")


@contextlib.contextmanager
def revision_tree(revision: str) -> Iterator[Path]:
    """The tracked files of ``revision``, in a folder of their own for as long as the context lasts."""
    with tempfile.TemporaryDirectory(prefix="revision-ab-") as tmp:
        yield extract(revision, [], Path(tmp))


def bench(tree: Path, bench_args: list[str], timeout_s: float) -> dict[str, Any]:
    """``callstack bench --json`` with ``tree``'s own packages; its figures, or what went wrong."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen([sys.executable, "-m", "services.cli", "bench", "--json", *bench_args], cwd=tree,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # its chains are its children: one group to stop
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        out, err = process.communicate()
        raise RuntimeError(f"callstack bench in {tree} took over {timeout_s:.0f} s") from None
    lines = out.strip().splitlines()
    try:
        figures = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        figures = {}
    if process.returncode != 0 and not figures.get("failures"):  # it exits 1 when completions failed
        raise RuntimeError(f"callstack bench in {tree} exited {process.returncode}: {err[-2000:]}")
    return {
        **{key: figures.get(key) for key in FIGURES},
        "untraced_throughput_per_s": figures.get("untraced", {}).get("throughput_per_s"),
        "host": figures.get("settings", {}).get("host"),  # revisions before the host reading have none
    }


def ratio(current: float | None, base: float | None) -> float | None:
    return round(current / base, 3) if current and base else None


def median(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return round(statistics.median(known), 3) if known else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    base_runs: list[dict[str, Any]] = []
    current_runs: list[dict[str, Any]] = []
    with revision_tree(args.base) as base_tree:
        for pair in range(args.pairs):
            order = [(base_tree, base_runs), (REPO, current_runs)]
            for tree, runs in order if pair % 2 == 0 else reversed(order):  # who goes first alternates
                runs.append(bench(tree, args.bench_args, args.timeout))
    pairs = [{
        "throughput_ratio": ratio(current["throughput_per_s"], base["throughput_per_s"]),
        "untraced_throughput_ratio": ratio(current["untraced_throughput_per_s"], base["untraced_throughput_per_s"]),
        "chain_overhead_ratio": ratio(current["chain_overhead_p50_ms"], base["chain_overhead_p50_ms"]),
    } for base, current in zip(base_runs, current_runs, strict=True)]
    result: dict[str, Any] = {
        "base": {"revision": args.base, "runs": base_runs},
        "current": {"revision": "this tree", "runs": current_runs},
        "pairs": pairs,
        **{key: median([pair[key] for pair in pairs]) for key in pairs[0]},
        "settings": {"pairs": args.pairs, "bench_args": args.bench_args},
    }
    if args.base_throughput and result["throughput_ratio"]:
        result["throughput_per_s_at_base_figures"] = round(result["throughput_ratio"] * args.base_throughput, 1)
    if args.base_overhead_ms and result["chain_overhead_ratio"]:
        result["chain_overhead_p50_ms_at_base_figures"] = round(
            result["chain_overhead_ratio"] * args.base_overhead_ms, 1)
    return result


def print_text(result: dict[str, Any]) -> None:
    for side in ("base", "current"):
        print(f"{side} ({result[side]['revision']}):")
        for run_ in result[side]["runs"]:
            host = f"  (bare start {run_['host']['interpreter_start_cpu_ms_before']} ms)" if run_["host"] else ""
            print(f"  traced {run_['throughput_per_s']:6.2f}/s  untraced {run_['untraced_throughput_per_s']:6.2f}/s  "
                  f"chain overhead p50 {run_['chain_overhead_p50_ms']:7.2f} ms  "
                  f"failures {run_['failures']} of {run_['completions']}{host}")
    for pair in result["pairs"]:
        print(f"  current / base: throughput x{pair['throughput_ratio']} "
              f"(untraced x{pair['untraced_throughput_ratio']}), chain overhead x{pair['chain_overhead_ratio']}")
    print(f"median of the pairs: throughput x{result['throughput_ratio']}, "
          f"chain overhead x{result['chain_overhead_ratio']}")
    if "throughput_per_s_at_base_figures" in result:
        print("where the base made its --base-throughput, this tree makes "
              f"{result['throughput_per_s_at_base_figures']}/s")
    if "chain_overhead_p50_ms_at_base_figures" in result:
        print("where the base's chain overhead was its --base-overhead-ms, this tree's is "
              f"{result['chain_overhead_p50_ms_at_base_figures']} ms")


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--base", required=True, help="git revision to compare this tree against")
    cli.add_argument("--pairs", type=int, default=3, help="bench runs of each, taking turns")
    cli.add_argument("--base-throughput", type=float, help="traced completions/s the base made elsewhere")
    cli.add_argument("--base-overhead-ms", type=float, help="chain overhead p50 the base had elsewhere")
    cli.add_argument("--timeout", type=float, default=1800, help="seconds one bench run may take")
    cli.add_argument("--json", action="store_true")
    cli.add_argument("bench_args", nargs=argparse.REMAINDER, help="after --: options for callstack bench")
    args = cli.parse_args(argv)
    args.bench_args = [arg for arg in args.bench_args if arg != "--"]
    if args.pairs < 1:
        cli.error("--pairs must be at least 1")
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_text(result)
    return 0 if all(figures["failures"] == 0 for figures in result["current"]["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
