"""What the interpreter does to itself inside bwrap, before any user code runs.

bwrap (started as root) has already given it a private root, PID, network, IPC and UTS namespaces and
``no_new_privs``; the executor puts its processes in the session's cgroup. Left to do here, where only
the process itself can: take the protocol pipes off 0/1, drop to the session's uid, set the rlimits
that back up the cgroup limits.
"""

from __future__ import annotations

import _signal  # signal without its enums: the signal module imports enum, a cost at every start
import os
import resource

# typing is not imported at run time: every sandbox's start pays for each module it imports.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RLIMITS = {
    "address_space": resource.RLIMIT_AS,
    "cpu_seconds": resource.RLIMIT_CPU,
    "processes": resource.RLIMIT_NPROC,
    "file_size": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "core": resource.RLIMIT_CORE,
}


def take_protocol_fds() -> tuple[int, int]:
    """Move the pipes to private descriptors (not inherited by subprocesses); 0/1/2 become /dev/null,
    so code that writes to the real descriptors cannot corrupt the protocol."""
    requests, answers = os.dup(0), os.dup(1)  # os.dup makes non-inheritable descriptors
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    return requests, answers


def close_other_fds(keep: tuple[int, ...]) -> None:
    """bwrap passes on only what it was given; close anything else anyway."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:  # noqa: SIM105 - contextlib.suppress: one import more at every start
                os.close(fd)
            except OSError:
                pass


def drop_identity(uid: int | None) -> int:
    """Become the session's uid (no groups); root inside bwrap keeps its capabilities until then."""
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    return os.geteuid()


def apply_limits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        if name in RLIMITS and value >= 0:
            # CPU: SIGXCPU at the soft limit, SIGKILL a little later if code ignores it.
            hard = value + 5 if name == "cpu_seconds" else value
            try:  # noqa: SIM105
                resource.setrlimit(RLIMITS[name], (value, hard))
            except (ValueError, OSError):
                pass


def prepare(config: dict[str, Any]) -> tuple[int, int, int]:
    """Everything before the first request; returns (requests fd, answers fd, effective uid)."""
    requests, answers = take_protocol_fds()
    close_other_fds((requests, answers))
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)  # a too-large write fails with EFBIG instead
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    try:  # noqa: SIM105 - first: without bwrap, the folder's parents may be root's only
        os.chdir(config.get("cwd", "/"))
    except OSError:
        pass
    uid = drop_identity(config.get("uid"))
    apply_limits(config.get("limits", {}))
    os.environ.clear()
    os.environ.update(config.get("env", {}))
    return requests, answers, uid
