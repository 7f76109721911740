"""The sandbox's system call filter: the kernel interfaces code never needs, refused before it can reach them.

libseccomp (through pyseccomp) compiles the filter once per executor; bwrap loads it (``--seccomp FD``) just
before it starts the interpreter, so it binds the interpreter and everything the code starts. Everything else
is allowed: the filter is a deny list in the spirit of Docker's default profile, aimed at what an unprivileged
process can still reach without capabilities: new namespaces (a user namespace gives back every capability
inside it), keyrings, eBPF, perf events, userfaultfd, io_uring, tracing other processes, and turning off
address randomisation. What needs a capability the session has not got (mounts, modules, clocks, reboot) is
refused by the filter too, as a second wall. Refused calls fail with EPERM (``clone3`` with ENOSYS, so that
the C library falls back to ``clone``, whose namespace flags are refused); a call from another architecture's
ABI (32-bit, x32) kills the process (libseccomp's default for a foreign architecture).
"""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

DENIED = (
    # namespaces and mounts
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    # keyrings, eBPF, perf events, page-fault handling, io_uring
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # other processes' memory, file handles that bypass paths
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "open_by_handle_at", "name_to_handle_at",
    # the machine's own: modules, kexec, clocks, swap, accounting, quotas, the kernel log, reboot
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    "syslog", "reboot", "iopl", "ioperm", "vhangup", "lookup_dcookie", "uselib", "fanotify_init",
)
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x80)
ADDR_NO_RANDOMIZE = 0x0040000
TIOCSTI = 0x5412  # pushes input into a terminal


class SeccompUnavailable(RuntimeError):
    pass


def write_filter(path: Path) -> int:
    """Compile the filter into ``path`` (BPF, as bwrap reads it); returns how many calls it refuses whatever
    their arguments. Raises SeccompUnavailable without libseccomp."""
    try:
        import pyseccomp as seccomp
    except (ImportError, RuntimeError, OSError) as error:  # pyseccomp raises RuntimeError without the library
        raise SeccompUnavailable(f"libseccomp cannot be loaded ({error})") from error
    refuse = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    with contextlib.suppress(OSError):  # libseccomp >= 2.5: a binary search over call numbers, not a list
        rules.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    denied = 0
    for name in DENIED:
        try:
            rules.add_rule(refuse, name)
            denied += 1
        except (OSError, ValueError, RuntimeError):  # a call this kernel's architecture does not have
            continue
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # its flags are in memory, out of a filter's reach
    for flag in NAMESPACE_FLAGS:
        rules.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.add_rule(refuse, "personality", seccomp.Arg(0, seccomp.MASKED_EQ, ADDR_NO_RANDOMIZE, ADDR_NO_RANDOMIZE))
    rules.add_rule(refuse, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        path.chmod(0o600)
        rules.export_bpf(out)
    return denied
