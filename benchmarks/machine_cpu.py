"""Where the machine's CPU goes under load: CPU per completion for the whole machine, each service process,
the code sessions' sandboxes, the load generator, and what is left (the kernel's own work, short-lived
processes outside any of those).

One chain (traced: OTLP/HTTP only, to a receiver in its own process; ``--untraced`` for
``OTEL_SDK_DISABLED=true``), warmed up, then ``--concurrency`` clients asking ``print(1)`` completions in
a closed loop for ``--seconds``. Around that window it reads ``/proc/stat`` (the machine), each service's
``/proc/<pid>/stat`` (its own time and its reaped children's) and this process's own times.

The sandboxes are counted whole: each code service is put in a CPU-accounting cgroup of the benchmark's own as
soon as it runs, so every process it starts (bwrap, the sandbox's interpreter from its first instruction) is
charged there until the executor moves it into its session's cgroup, whose charge is read too (the code
services' cgroup roots). Without cgroups (not root), only bwrap's reaped time and the session cgroups are
counted, and an interpreter's start before its move falls in the rest (``sandbox_scope`` says which).
Unlike benchmarks/tracing_cost.py (sequential completions, the services only), it counts everything a
completion costs the machine when it is busy, which is what throughput is bound by.

    .venv/bin/python -m benchmarks.machine_cpu [--seconds 12] [--concurrency 8] [--untraced] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import host_speed
from benchmarks.chain_bench import Side, ask, load, uid_bases, unmount_sessions
from benchmarks.otlp_sink import otlp_receiver
from services.auth.client_tokens import bearer_source
from services.code_execution.cgroups import CGROUP_FS, SessionCgroup
from services.code_execution.config import CODE_SERVICES, UID_RANGE
from services.common.settings import DEFAULT_INSTANCE_ID
from services.launcher import Chain
from services.portal.client import PortalClient

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
CODE_PACKAGES = tuple(name.replace("-", "_") for name in CODE_SERVICES)
SCOPE_WHOLE = "every process the code services started (accounting cgroups) and the session cgroups"
SCOPE_PART = "bwrap's reaped time and the session cgroups (no accounting cgroup: an interpreter's start is in the rest)"


@dataclass(frozen=True)
class Reading:
    machine_s: float  # busy time of every CPU (all but idle and iowait)
    processes_s: dict[str, tuple[float, float]]  # service: (own, reaped children's)
    sandboxes_s: float
    client_s: float
    started_s: float  # charged to the code services' accounting cgroups: each service and what it started there


def machine_busy_s() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS_PER_S


def process_s(pid: int) -> tuple[float, float]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S, (int(fields[13]) + int(fields[14])) / TICKS_PER_S


def sandboxes_s(uid_base: str) -> float:
    """CPU time charged to the code services' cgroup roots (``fllm-code-<uid base>-*``, each service's uid base:
    FLLM_CODE_UID_BASE and the range after it), read as a session's cgroup is (v2 ``cpu.stat``, v1
    ``cpuacct``; 0 where neither is there)."""
    v2 = (CGROUP_FS / "cgroup.controllers").exists()
    roots = [
        SessionCgroup([folder], 2 if v2 else 1)
        for base in range(int(uid_base), int(uid_base) + len(CODE_SERVICES) * UID_RANGE, UID_RANGE)
        for folder in (CGROUP_FS if v2 else CGROUP_FS / "cpuacct").glob(f"fllm-code-{base}-*")
    ]
    return sum(root.cpu_seconds() or 0.0 for root in roots)


@contextlib.contextmanager
def code_service_cgroups(chain: Chain) -> Iterator[list[SessionCgroup]]:
    """A CPU-accounting cgroup for each running code service (cgroup v1 ``cpuacct``, else v2): what a service
    starts from then on is born in its cgroup. Empty when cgroups cannot be written here."""
    version = 2 if (CGROUP_FS / "cgroup.controllers").exists() else 1
    hierarchy = CGROUP_FS if version == 2 else CGROUP_FS / "cpuacct"
    pids = [service.process.pid for package, service in chain.services.items()
            if package in CODE_PACKAGES and service.process]
    cgroups: list[SessionCgroup] = []
    try:
        for pid in pids:
            folder = hierarchy / f"fllm-bench-machine-cpu-{pid}"
            cgroups.append(SessionCgroup([folder], version))
            folder.mkdir(exist_ok=True)
            cgroups[-1].add(pid)
    except OSError:
        yield []
    else:
        yield cgroups
    finally:  # the chain has stopped: a straggler is killed, then the folder removed
        for cgroup in cgroups:
            cgroup.remove()


def read(chain: Chain, uid_base: str, accounting: list[SessionCgroup]) -> Reading:
    pids = {package: service.process.pid for package, service in chain.services.items() if service.process}
    own = os.times()
    started = sum(cgroup.cpu_seconds() or 0.0 for cgroup in accounting)
    return Reading(machine_busy_s(), {package: process_s(pid) for package, pid in pids.items()},
                   sandboxes_s(uid_base), own.user + own.system, started)


def per_completion(before: Reading, after: Reading, completions: int, whole: bool) -> dict[str, Any]:
    """CPU per completion by part. ``whole``: the code services sat in accounting cgroups, so their sandboxes
    are what those cgroups were charged beyond the services' own time, plus the session cgroups."""
    def ms(seconds: float) -> float:
        return round(seconds * 1000 / completions, 2)

    own = {package: after.processes_s[package][0] - own for package, (own, _) in before.processes_s.items()}
    reaped = {package: after.processes_s[package][1] - was for package, (_, was) in before.processes_s.items()}
    in_sessions = after.sandboxes_s - before.sandboxes_s
    if whole:  # bwrap's reaped time was charged to the accounting cgroups already
        code_own = sum(seconds for package, seconds in own.items() if package in CODE_PACKAGES)
        sandboxes = after.started_s - before.started_s - code_own + in_sessions
        children = sum(seconds for package, seconds in reaped.items() if package not in CODE_PACKAGES)
    else:
        sandboxes, children = in_sessions + sum(reaped.values()), 0.0
    services = {package: ms(seconds) for package, seconds in sorted(own.items(), key=lambda kv: -kv[1])}
    machine, client = ms(after.machine_s - before.machine_s), ms(after.client_s - before.client_s)
    counted = sum(services.values()) + ms(children) + ms(sandboxes) + client
    return {"machine_ms": machine, "services_ms": services, "services_total_ms": round(sum(services.values()), 2),
            "sandboxes_ms": ms(sandboxes), "other_children_ms": ms(children), "load_generator_ms": client,
            "rest_ms": round(machine - counted, 2)}


async def measure(side: Side, uid_base: str, accounting: list[SessionCgroup],
                  args: argparse.Namespace) -> dict[str, Any]:
    side.client = PortalClient(side.chain.url("core_api"), DEFAULT_INSTANCE_ID, timeout_s=60,
                               bearer=bearer_source(side.chain.data_dir))
    try:
        for _ in range(args.warmup):
            await ask(side)
        await asyncio.sleep(1.0)  # the warm-up's spans exported, its sessions' sandboxes replaced
        side.completions = side.failures = 0
        before = read(side.chain, uid_base, accounting)
        rate = await load(side, args.seconds, args.concurrency)
        after = read(side.chain, uid_base, accounting)
    finally:
        await side.client.aclose()
    if not side.completions:
        raise RuntimeError("no completion in the measured window")
    return {"throughput_per_s": round(rate, 2), "completions": side.completions, "failures": side.failures,
            "traced": not args.untraced,
            "cpu_ms_per_completion": per_completion(before, after, side.completions, bool(accounting)),
            "settings": {"seconds": args.seconds, "concurrency": args.concurrency, "cores": os.cpu_count(),
                         "sandbox_scope": SCOPE_WHOLE if accounting else SCOPE_PART}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    uid_base, host_before = uid_bases()[0], host_speed.interpreter_start_cpu_ms()
    with tempfile.TemporaryDirectory(prefix="machine-cpu-") as tmp, otlp_receiver() as endpoint:
        env = {"FLLM_CODE_UID_BASE": uid_base, "FLLM_TELEMETRY_FILE": "off", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        if args.untraced:
            env["OTEL_SDK_DISABLED"] = "true"
        side = Side("traced" if not args.untraced else "untraced", Chain(Path(tmp), ephemeral_ports=True, env=env))
        side.chain.start()
        with code_service_cgroups(side.chain) as accounting:
            try:
                result = asyncio.run(measure(side, uid_base, accounting, args))
            finally:
                side.chain.stop()
                unmount_sessions(side.chain)
    result["settings"]["host"] = host_speed.reading(host_before, host_speed.interpreter_start_cpu_ms())
    return result


def print_text(result: dict[str, Any]) -> None:
    cpu = result["cpu_ms_per_completion"]
    print(f"host: {host_speed.describe(result['settings']['host'])}")
    print(f"{'traced' if result['traced'] else 'untraced'}: {result['throughput_per_s']} completions/s "
          f"({result['completions']} in the window, {result['failures']} failures); CPU per completion:")
    print(f"  {'machine':22s} {cpu['machine_ms']:7.2f} ms")
    for package, ms in cpu["services_ms"].items():
        print(f"    {package:20s} {ms:7.2f}")
    for key, label in (("sandboxes_ms", "sandboxes"), ("other_children_ms", "other children"),
                       ("load_generator_ms", "load generator"), ("rest_ms", "rest (kernel, other)")):
        print(f"    {label:20s} {cpu[key]:7.2f}")
    print(f"  sandboxes: {result['settings']['sandbox_scope']}")


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--seconds", type=float, default=12.0, help="length of the measured load")
    cli.add_argument("--concurrency", type=int, default=8, help="clients in the closed loop")
    cli.add_argument("--warmup", type=int, default=10, help="sequential completions before measuring")
    cli.add_argument("--untraced", action="store_true", help="the chain with OTEL_SDK_DISABLED=true")
    cli.add_argument("--json", action="store_true")
    args = cli.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_text(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
