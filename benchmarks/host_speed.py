"""How fast the machine was when a benchmark ran, so figures from different hours or machines can be compared.

The same code on this 2-core machine has given 18 to 30 completions/s at different hours: the host's speed
moves under it. A benchmark reads it before and after its load: the CPU time (user + system, as the kernel
accounts it to a reaped child) of a bare start of the interpreter the services run on,
``python -I -S -B -c pass``, the median of ``runs`` starts; and which interpreter that is: its version,
binary and whether libpython is a shared library it loads or built into the binary. (Whether it was built
with profile-guided and link-time optimisation, as Debian's and the official images' are, sysconfig
cannot tell: Debian's reports its shared build's flags. The README has the measured difference.)

    .venv/bin/python -m benchmarks.host_speed [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any


def interpreter_start_cpu_ms(runs: int = 30) -> float:
    """Median CPU milliseconds of one bare start and exit of this interpreter."""
    samples = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-I", "-S", "-B", "-c", "pass"], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    return round(statistics.median(samples), 2)


def interpreter_build() -> dict[str, Any]:
    maps = Path("/proc/self/maps").read_text() if os.path.exists("/proc/self/maps") else ""
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": os.path.realpath(sys.executable),
        "libpython": "shared library" if "/libpython" in maps else "in the executable",
    }


def reading(before_ms: float, after_ms: float) -> dict[str, Any]:
    return {"interpreter_start_cpu_ms_before": before_ms, "interpreter_start_cpu_ms_after": after_ms,
            "build": interpreter_build()}


def describe(host: dict[str, Any]) -> str:
    build = host["build"]
    return (f"bare interpreter start {host['interpreter_start_cpu_ms_before']:.2f} ms CPU before the load, "
            f"{host['interpreter_start_cpu_ms_after']:.2f} after; {build['python']} at {build['executable']}, "
            f"libpython {build['libpython']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps({"interpreter_start_cpu_ms": interpreter_start_cpu_ms(args.runs),
                      "build": interpreter_build()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
