"""One cgroup per session: memory, CPU and process limits that cover everything the session starts.

cgroup v2 when ``/sys/fs/cgroup`` is a cgroup2 mount (one folder, ``cgroup.kill``), else cgroup v1
with the ``cpu``, ``memory`` and ``pids`` hierarchies (one folder in each). Where none can be
written (not root, read-only cgroupfs, controllers not delegated) ``CgroupRoot.open`` says why and
the executor reports the rlimits as the only limits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int
    cpu_cores: float  # CFS quota, in cores
    processes: int


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    """A small cgroup file's text, read at every execution (os.read: under half of ``Path.read_text``)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


def _field(path: Path, name: str) -> int | None:
    """The value of ``name`` in a flat-keyed cgroup file (``cpu.stat``, ``memory.events``, ...)."""
    for line in _read(path).splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    return None


class SessionCgroup:
    """A session's folder in each hierarchy (v1) or its one folder (v2)."""

    def __init__(self, folders: list[Path], version: int) -> None:
        self.folders, self.version = folders, version

    def add(self, pid: int) -> None:
        for folder in self.folders:
            _write(folder / "cgroup.procs", str(pid))

    def adopt(self, pids: list[int]) -> None:
        """Move in those of ``pids`` a folder does not hold yet (each move waits for the kernel: skip it
        where it is done already)."""
        for folder in self.folders:
            inside = set((folder / "cgroup.procs").read_text().split())
            for pid in pids:
                if str(pid) not in inside:
                    _write(folder / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for folder in self.folders:
            with contextlib.suppress(FileNotFoundError):
                found.update(int(line) for line in (folder / "cgroup.procs").read_text().split())
        return found

    def contains(self, pid: int) -> bool:
        return pid in self.pids()

    def kill(self, keep: frozenset[int] = frozenset(), timeout_s: float = 5.0) -> None:
        """SIGKILL every process in the cgroup but ``keep``, until none is left (forks race the sweep)."""
        if self.version == 2 and not keep:
            with contextlib.suppress(OSError):
                _write(self.folders[0] / "cgroup.kill", "1")
        deadline = time.monotonic() + timeout_s
        while (pids := self.pids() - keep) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def remove(self) -> None:
        self.kill()
        for folder in self.folders:
            for _ in range(200):  # the killed processes leave the cgroup when they are reaped
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as error:
                    if error.errno != errno.EBUSY:
                        break
                    time.sleep(0.005)

    def cpu_seconds(self) -> float | None:
        """CPU time of the cgroup's processes (v2 cpu.stat; v1 cpuacct, when mounted with cpu)."""
        with contextlib.suppress(OSError, ValueError):
            if self.version == 2:
                usage_us = _field(self.folders[0] / "cpu.stat", "usage_usec")
                return None if usage_us is None else usage_us / 1e6
            for folder in reversed(self.folders):  # cpuacct on its own comes last; mounted with cpu, it is cpu's
                with contextlib.suppress(FileNotFoundError):
                    return int(_read(folder / "cpuacct.usage")) / 1e9
        return None

    def throttled(self) -> int:
        """How many CFS periods the cgroup was held back by its CPU quota."""
        with contextlib.suppress(OSError, ValueError):
            return _field(self.folders[0 if self.version == 2 else 1] / "cpu.stat", "nr_throttled") or 0
        return 0

    def peak_memory(self) -> int | None:
        """The most memory the session's processes held at once since the session began."""
        with contextlib.suppress(OSError, ValueError):
            name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
            return int(_read(self.folders[0] / name))
        return None

    def oom_kills(self) -> int | None:
        """How many of the session's processes the kernel killed at its memory limit (v2 memory.events,
        v1 memory.oom_control: kernels since 4.13)."""
        with contextlib.suppress(OSError, ValueError):
            name = "memory.events" if self.version == 2 else "memory.oom_control"
            return _field(self.folders[0] / name, "oom_kill")
        return None

    def usage(self) -> CgroupUsage:
        return CgroupUsage(self.oom_kills(), self.cpu_seconds(), self.throttled())


@dataclass(frozen=True)
class CgroupUsage:
    """Counters of a session's cgroup at one moment; ``since`` gives what an execution added."""

    oom_kills: int | None
    cpu_s: float | None
    throttled: int

    def since(self, before: CgroupUsage) -> CgroupUsage:
        return CgroupUsage(
            None if self.oom_kills is None or before.oom_kills is None else self.oom_kills - before.oom_kills,
            None if self.cpu_s is None or before.cpu_s is None else self.cpu_s - before.cpu_s,
            self.throttled - before.throttled,
        )


class CgroupRoot:
    """The executor's own cgroup folder(s), under which each session gets one."""

    def __init__(self, folders: list[Path], version: int) -> None:
        self.folders, self.version = folders, version

    @classmethod
    def open(cls, name: str) -> tuple[CgroupRoot | None, str]:
        """The root for ``name`` (emptied of a previous run's sessions), or None and the reason."""
        try:
            if (CGROUP_FS / "cgroup.controllers").exists():
                root = cls([CGROUP_FS / name], 2)
                with contextlib.suppress(OSError):  # usually enabled already; needed for ours to get them
                    _write(CGROUP_FS / "cgroup.subtree_control", "+memory +cpu +pids")
                root.folders[0].mkdir(exist_ok=True)
                _write(root.folders[0] / "cgroup.subtree_control", "+memory +cpu +pids")
            else:
                missing = [c for c in V1_CONTROLLERS if not (CGROUP_FS / c / "cgroup.procs").exists()]
                if missing:
                    return None, f"cgroup v1 controllers not mounted: {', '.join(missing)}"
                # cpuacct, when mounted on its own, gives the session's CPU time.
                extra = ["cpuacct"] * (CGROUP_FS / "cpuacct" / "cpuacct.usage").exists()
                root = cls([CGROUP_FS / c / name for c in (*V1_CONTROLLERS, *extra)], 1)
                for folder in root.folders:
                    folder.mkdir(exist_ok=True)
            root.clear()
            root.yield_cpu()
            return root, f"cgroup-v{root.version}"
        except OSError as error:
            return None, f"no writable cgroup ({error.strerror or error})"

    def yield_cpu(self) -> None:
        """Under contention, all sessions together weigh a quarter of a default process group: the server
        (and the sessions' own answers) stay fast while a session burns its quota."""
        with contextlib.suppress(OSError):
            if self.version == 2:
                _write(self.folders[0] / "cpu.weight", "25")
            else:
                _write(self.folders[1] / "cpu.shares", "256")

    def clear(self) -> None:
        children = {child.name for folder in self.folders if folder.is_dir() for child in folder.iterdir()
                    if child.is_dir()}
        for name in children:
            SessionCgroup([folder / name for folder in self.folders], self.version).remove()

    def create(self, name: str, limits: CgroupLimits) -> SessionCgroup:
        cgroup = SessionCgroup([folder / name for folder in self.folders], self.version)
        for folder in cgroup.folders:
            folder.mkdir(exist_ok=True)
        quota = max(1000, int(limits.cpu_cores * CPU_PERIOD_US))
        if self.version == 2:
            folder = cgroup.folders[0]
            _write(folder / "memory.max", str(limits.memory_bytes))
            with contextlib.suppress(OSError):
                _write(folder / "memory.swap.max", "0")
            _write(folder / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            _write(folder / "pids.max", str(limits.processes))
        else:
            memory, cpu, pids = cgroup.folders[:3]
            _write(memory / "memory.limit_in_bytes", str(limits.memory_bytes))
            with contextlib.suppress(OSError):  # only with swap accounting
                _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(quota))
            _write(pids / "pids.max", str(limits.processes))
        return cgroup

    def remove(self) -> None:
        self.clear()
        for folder in self.folders:
            with contextlib.suppress(OSError):
                folder.rmdir()
