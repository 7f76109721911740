"""What one session's sandbox costs: start it (bwrap, the interpreter, its slot), run ``print(1)``, discard it.

Every completion of the chain takes a new sandbox from the warm pool and the pool starts its replacement,
so this cycle is paid once per completion. Measured through the real executor (slots, cgroups, tmpfs,
``WorkerProcess``), in rounds that alternate two interpreter packages on the same machine state:

- ``baseline``: a git revision's (``--baseline HEAD`` by default) interpreter package, compiled as that
  revision's executor installs it (bound as sources where it did not: before ``launcher.install_package``),
  started by that revision's ``process.WorkerProcess`` speaking that revision's ``protocol``;
- ``current``: this tree's package, installed by the executor as it does at start (``install_package``),
  started by this tree's ``WorkerProcess``.

Besides CPU and wall time, it counts how long the event loop was held per cycle (a 1 ms ticker's lateness
beyond 1 ms): a held loop delays every request the code service is serving meanwhile.

CPU is what the kernel charged to a cgroup of this benchmark's own (cgroup v1 ``cpuacct`` or v2), which the
sandbox's processes belong to until they are moved into their session's cgroup, plus what the session's
cgroup was charged: bwrap, the interpreter's start and ``print(1)``, the server's side. Without root it
falls back to this process's CPU alone (``cpu_scope``). The server's side alone (this process, its threads
included: starting bwrap, the cgroups and the tmpfs, the pipes, the discard) is ``server_cpu_ms_per_cycle``.

    .venv/bin/python -m benchmarks.sandbox_start [--cycles 20] [--rounds 4] [--baseline HEAD] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import functools
import importlib.util
import json
import os
import py_compile
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from services.code_execution.cgroups import SessionCgroup
from services.code_execution.config import ExecutorConfig
from services.code_execution.executor import Executor
from services.code_execution.pool import WarmSandbox
from services.code_execution.process import WorkerProcess

REPO = Path(__file__).resolve().parents[1]
PACKAGE_PATH = "services/code_execution/interpreter"
CGROUP_NAME = "fllm-bench-sandbox-start"
BASELINE_MODULE = "baseline_fllm_interpreter"  # the baseline's interpreter package, as the server imports it
Spawn = Callable[[list[str], SessionCgroup | None, float], Awaitable[Any]]


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cgroup() -> tuple[Path, str, Path] | None:
    """(our folder, its CPU file, the folder we came from) in cgroup v2, or v1's cpuacct hierarchy."""
    fs = Path("/sys/fs/cgroup")
    v2 = (fs / "cgroup.controllers").exists()
    hierarchy = fs if v2 else fs / "cpuacct"
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (v2 and controllers == "") or (not v2 and "cpuacct" in controllers.split(",")):
            return hierarchy / CGROUP_NAME, "cpu.stat" if v2 else "cpuacct.usage", hierarchy / path.strip("/")
    return None


@contextlib.contextmanager
def cpu_meter() -> Iterator[tuple[str, Callable[[], float]]]:
    """A cgroup of this process's own (its children are born in it), or this process's CPU alone."""
    found = _cgroup()
    try:
        if found is None:
            raise OSError("no cpuacct cgroup")
        folder, stat, origin = found
        folder.mkdir(exist_ok=True)
        (folder / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        yield "this process only (no cgroup of its own: the interpreters' start is not counted)", _own_cpu
        return

    def charged() -> float:
        text = (folder / stat).read_text()
        if stat == "cpu.stat":
            return int(text.split("usage_usec ")[1].split()[0]) / 1e6
        return int(text) / 1e9

    try:
        yield f"cgroup {folder}", charged
    finally:
        with contextlib.suppress(OSError):
            (origin / "cgroup.procs").write_text(str(os.getpid()))
            folder.rmdir()


def _git_show(revision: str, path: str) -> bytes:
    return subprocess.run(["git", "show", f"{revision}:{path}"], cwd=REPO, capture_output=True, check=True).stdout


def baseline_package(revision: str, into: Path) -> str:
    """The interpreter package at ``revision``: compiled as ``launcher.install_package`` compiles it where that
    revision has it (its executor runs such a copy), else its sources alone (as its executor bound them)."""
    folder = into / "fllm_interpreter"
    folder.mkdir(parents=True)
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{revision}:{PACKAGE_PATH}"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        if name.endswith(".py"):
            (folder / name).write_bytes(_git_show(revision, f"{PACKAGE_PATH}/{name}"))
    if b"def install_package(" in (folder / "launcher.py").read_bytes():
        compileall.compile_dir(folder, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return str(folder)


def _load(name: str, path: Path, package: bool = False) -> Any:
    locations = [str(path.parent)] if package else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=locations)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # a sources-only baseline stays one
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes
    return module


def baseline_spawn(revision: str, into: Path, package: str) -> Spawn:
    """``WorkerProcess.spawn`` of ``revision``'s process.py, loaded beside this tree's modules but with its own
    revision's interpreter package (``protocol``, ``launcher``) in place of this tree's."""
    _load(BASELINE_MODULE, Path(package) / "__init__.py", package=True)
    path = into / "baseline_process.py"
    source = _git_show(revision, "services/code_execution/process.py")
    path.write_bytes(source.replace(b"services.code_execution.interpreter.", f"{BASELINE_MODULE}.".encode()))
    return _load("baseline_process", path).WorkerProcess.spawn  # type: ignore[no-any-return]


async def _ticker(late_ms: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(0.001)
        late = (loop.time() - before) * 1000 - 1.0
        if late > 1.0:
            late_ms.append(late)


async def _cycles(executor: Executor, variant: tuple[str, Spawn], cycles: int,
                  meter: Callable[[], float]) -> dict[str, float]:
    executor.host.package_dir, spawn = variant
    start_ms: list[float] = []
    first_ms: list[float] = []
    late_ms: list[float] = []
    session_cpu = 0.0
    ticker = asyncio.create_task(_ticker(late_ms))
    cpu_before, server_before, wall_before = meter(), _own_cpu(), time.perf_counter()
    for _ in range(cycles):
        began = time.perf_counter()
        slot = executor.sessions.new_slot()
        worker = await spawn(executor.host.command(slot), slot.cgroup, 30.0)
        ready = time.perf_counter()
        reply = await worker.execute("print(1)", 4096, True, 30.0)
        done = time.perf_counter()
        if reply.get("stdout") != "1\n":
            raise RuntimeError(f"print(1) answered {reply}")
        if slot.cgroup is not None:  # what ran after the sandbox's processes moved into the session's cgroup
            session_cpu += slot.cgroup.cpu_seconds() or 0.0
        await executor._discard_warm(WarmSandbox(slot, worker))
        start_ms.append((ready - began) * 1000)
        first_ms.append((done - ready) * 1000)
    cpu, wall = meter() - cpu_before + session_cpu, time.perf_counter() - wall_before
    server = _own_cpu() - server_before
    ticker.cancel()
    return {"cpu_ms_per_cycle": cpu / cycles * 1000, "server_cpu_ms_per_cycle": server / cycles * 1000,
            "wall_ms_per_cycle": wall / cycles * 1000,
            "start_p50_ms": statistics.median(start_ms), "first_print_p50_ms": statistics.median(first_ms),
            "loop_held_ms_per_cycle": sum(late_ms) / cycles, "loop_held_max_ms": max(late_ms, default=0.0)}


async def measure(cycles: int, rounds: int, revision: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sandbox-start-") as tmp, cpu_meter() as (scope, meter):
        config = ExecutorConfig(sessions_dir=Path(tmp) / "sessions", pool_size=0)
        executor = Executor(config, "bench")
        await executor.start()
        package = baseline_package(revision, Path(tmp) / "baseline")
        variants = {
            "baseline": (package, baseline_spawn(revision, Path(tmp), package)),
            # as the executor starts one: with the system call filter, when this host has one
            "current": (executor.host.package_dir,
                        functools.partial(WorkerProcess.spawn, seccomp_filter=executor.host.seccomp_filter)),
        }
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        try:
            for variant in variants.values():  # warm-up: the page cache, the first cgroups
                await _cycles(executor, variant, 2, meter)
            for round_no in range(rounds):
                order = list(variants.items())
                for name, variant in order if round_no % 2 == 0 else reversed(order):
                    samples[name].append(await _cycles(executor, variant, cycles, meter))
        finally:
            await executor.stop()
    result: dict[str, Any] = {
        name: {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
        for name, runs in samples.items()
    }
    result["cpu_ratio"] = round(result["current"]["cpu_ms_per_cycle"] / result["baseline"]["cpu_ms_per_cycle"], 3)
    result["settings"] = {"cycles": cycles, "rounds": rounds, "baseline": revision, "cpu_scope": scope,
                          "sandbox": dict(executor.host.report), "cores": os.cpu_count()}
    return result


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--cycles", type=int, default=20, help="start/print(1)/discard cycles per round and package")
    cli.add_argument("--rounds", type=int, default=4, help="rounds (the two packages alternate)")
    cli.add_argument("--baseline", default="HEAD", help="git revision of the baseline interpreter package")
    cli.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = cli.parse_args()
    result = asyncio.run(measure(args.cycles, args.rounds, args.baseline))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"sandbox cycle (start, print(1), discard), medians of {args.rounds} rounds x {args.cycles}; "
          f"CPU: {result['settings']['cpu_scope']}; sandbox: {result['settings']['sandbox'].get('isolation')}")
    print(f"{'':10}{'CPU ms':>10}{'server ms':>11}{'wall ms':>10}{'start ms':>10}{'1st print ms':>14}"
          f"{'loop held ms':>14}{'(max)':>8}")
    for name in ("baseline", "current"):
        r = result[name]
        print(f"{name:10}{r['cpu_ms_per_cycle']:10.2f}{r['server_cpu_ms_per_cycle']:11.2f}"
              f"{r['wall_ms_per_cycle']:10.2f}{r['start_p50_ms']:10.2f}"
              f"{r['first_print_p50_ms']:14.2f}{r['loop_held_ms_per_cycle']:14.2f}{r['loop_held_max_ms']:8.1f}")
    print(f"CPU current / baseline: x{result['cpu_ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
