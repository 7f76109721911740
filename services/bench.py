"""``callstack bench``: the chain's end-to-end latency, the cost of tracing, throughput, per-hop time and
code execution speed, measured side by side in one run (benchmarks/chain_bench.py does the work)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from services.launcher import REPO


def _chain_bench() -> Any:
    if str(REPO) not in sys.path:  # benchmarks/ sits beside the installed packages, not in them
        sys.path.insert(0, str(REPO))
    from benchmarks import chain_bench

    return chain_bench


def cmd_bench(args: argparse.Namespace) -> int:
    return _chain_bench().main(args)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``callstack`` subcommands."""
    text = "start two chains (traced, untraced) and measure latency, tracing cost, throughput, code execution"
    command = subparsers.add_parser("bench", help=text, description=text)
    _chain_bench().add_arguments(command)
    command.set_defaults(func=cmd_bench)
    return command
