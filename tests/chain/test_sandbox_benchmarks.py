"""The code executor's benchmarks at their smallest: the sandbox cycle and the chain A/B print their figures."""

from __future__ import annotations

import json
import subprocess
import sys

from services.launcher import REPO


def _figures(*command: str) -> dict[str, object]:
    completed = subprocess.run([sys.executable, "-m", *command, "--json"], cwd=REPO, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_the_sandbox_start_benchmark_compares_a_revision_with_this_tree() -> None:
    figures = _figures("benchmarks.sandbox_start", "--cycles", "2", "--rounds", "1")
    for name in ("baseline", "current"):
        side = figures[name]
        assert isinstance(side, dict)
        for key in ("cpu_ms_per_cycle", "server_cpu_ms_per_cycle", "wall_ms_per_cycle", "start_p50_ms",
                    "first_print_p50_ms"):
            assert isinstance(side[key], float) and side[key] > 0, (name, key, side[key])
        assert side["loop_held_ms_per_cycle"] >= 0
        if figures["settings"]["cpu_scope"].startswith("cgroup"):  # the sandbox's processes are counted too
            assert side["cpu_ms_per_cycle"] > side["server_cpu_ms_per_cycle"]
    assert isinstance(figures["cpu_ratio"], float) and figures["cpu_ratio"] > 0


def test_the_chain_ab_benchmark_runs_both_chains_without_failures() -> None:
    figures = _figures("benchmarks.code_execution_ab", "--runs", "3", "--warmup", "1", "--rounds", "1",
                       "--seconds", "1")
    for name in ("baseline", "current"):
        side = figures[name]
        assert isinstance(side, dict)
        assert side["failures"] == 0 and side["completions"] > 3 and side["e2e"]["p50_ms"] > 0
    assert isinstance(figures["e2e_p50_ratio"], float) and isinstance(figures["throughput_ratio"], float)
