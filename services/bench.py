"""``callstack bench``: the chain's end-to-end latency, the cost of tracing, throughput, per-hop time and
code execution speed, measured side by side in one run (benchmarks/chain_bench.py does the work)."""

from __future__ import annotations

import argparse
from typing import Any


def _chain_bench() -> Any:
    from benchmarks import chain_bench  # an installed package (pyproject's packages), imported when it runs

    return chain_bench


TEXT = "start two chains (traced, untraced) and measure latency, tracing cost, throughput, code execution"


def cmd_bench(args: argparse.Namespace) -> int:
    bench = _chain_bench()
    parser = argparse.ArgumentParser(prog="callstack bench", description=TEXT)
    bench.add_arguments(parser)
    return bench.main(parser.parse_args(args.bench_args))


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``callstack`` subcommands; its options are parsed (and the benchmark imported)
    only when it runs, so every other command starts without that import."""
    command = subparsers.add_parser("bench", help=TEXT, description=TEXT, add_help=False)
    command.add_argument("bench_args", nargs=argparse.REMAINDER, help="see `callstack bench --help`")
    command.set_defaults(func=cmd_bench)
    return command
