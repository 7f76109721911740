"""Where the machine's CPU goes under load: CPU per completion for the whole machine, each service process,
the code sessions' sandboxes, the load generator, and what is left (the kernel's own work, short-lived
processes outside any of those).

One chain (traced: OTLP/HTTP only, to a receiver in its own process; ``--untraced`` for
``OTEL_SDK_DISABLED=true``), warmed up, then ``--concurrency`` clients asking ``print(1)`` completions in
a closed loop for ``--seconds``. Around that window it reads ``/proc/stat`` (the machine), each service's
``/proc/<pid>/stat`` (its own time and its reaped children's: bwrap), the code services' cgroup roots
(the sandboxes' interpreters once moved into their session's cgroup) and this process's own times.
Unlike benchmarks/tracing_cost.py (sequential completions, the services only), it counts everything a
completion costs the machine when it is busy, which is what throughput is bound by.

    .venv/bin/python -m benchmarks.machine_cpu [--seconds 12] [--concurrency 8] [--untraced] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
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


@dataclass(frozen=True)
class Reading:
    machine_s: float  # busy time of every CPU (all but idle and iowait)
    processes_s: dict[str, tuple[float, float]]  # service: (own, reaped children's)
    sandboxes_s: float
    client_s: float


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


def read(chain: Chain, uid_base: str) -> Reading:
    pids = {package: service.process.pid for package, service in chain.services.items() if service.process}
    own = os.times()
    return Reading(machine_busy_s(), {package: process_s(pid) for package, pid in pids.items()},
                   sandboxes_s(uid_base), own.user + own.system)


def per_completion(before: Reading, after: Reading, completions: int) -> dict[str, Any]:
    def ms(seconds: float) -> float:
        return round(seconds * 1000 / completions, 2)

    services = {package: ms(after.processes_s[package][0] - own) for package, (own, _) in before.processes_s.items()}
    children = ms(sum(after.processes_s[p][1] - reaped for p, (_, reaped) in before.processes_s.items()))
    machine = ms(after.machine_s - before.machine_s)
    sandboxes, client = ms(after.sandboxes_s - before.sandboxes_s), ms(after.client_s - before.client_s)
    counted = sum(services.values()) + children + sandboxes + client
    return {"machine_ms": machine, "services_ms": dict(sorted(services.items(), key=lambda kv: -kv[1])),
            "services_total_ms": round(sum(services.values()), 2), "reaped_children_ms": children,
            "sandbox_cgroups_ms": sandboxes, "load_generator_ms": client, "rest_ms": round(machine - counted, 2)}


async def measure(side: Side, uid_base: str, args: argparse.Namespace) -> dict[str, Any]:
    side.client = PortalClient(side.chain.url("core_api"), DEFAULT_INSTANCE_ID, timeout_s=60,
                               bearer=bearer_source(side.chain.data_dir))
    try:
        for _ in range(args.warmup):
            await ask(side)
        await asyncio.sleep(1.0)  # the warm-up's spans exported, its sessions' sandboxes replaced
        side.completions = side.failures = 0
        before = read(side.chain, uid_base)
        rate = await load(side, args.seconds, args.concurrency)
        after = read(side.chain, uid_base)
    finally:
        await side.client.aclose()
    if not side.completions:
        raise RuntimeError("no completion in the measured window")
    return {"throughput_per_s": round(rate, 2), "completions": side.completions, "failures": side.failures,
            "traced": not args.untraced, "cpu_ms_per_completion": per_completion(before, after, side.completions),
            "settings": {"seconds": args.seconds, "concurrency": args.concurrency, "cores": os.cpu_count()}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    uid_base, host_before = uid_bases()[0], host_speed.interpreter_start_cpu_ms()
    with tempfile.TemporaryDirectory(prefix="machine-cpu-") as tmp, otlp_receiver() as endpoint:
        env = {"FLLM_CODE_UID_BASE": uid_base, "FLLM_TELEMETRY_FILE": "off", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        if args.untraced:
            env["OTEL_SDK_DISABLED"] = "true"
        side = Side("traced" if not args.untraced else "untraced", Chain(Path(tmp), ephemeral_ports=True, env=env))
        side.chain.start()
        try:
            result = asyncio.run(measure(side, uid_base, args))
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
    for key, label in (("reaped_children_ms", "bwrap (reaped)"), ("sandbox_cgroups_ms", "sandbox cgroups"),
                       ("load_generator_ms", "load generator"), ("rest_ms", "rest (kernel, other)")):
        print(f"    {label:20s} {cpu[key]:7.2f}")


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
