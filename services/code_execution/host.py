"""What this host lets the executor build, found out once at start: bwrap, cgroups, tmpfs quotas, uids.

``HostSandbox.report`` says what holds (``GET /status`` and ``code_session.sandbox.*`` on spans), with
the reason wherever a part falls back.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import zlib
from pathlib import Path

from services.code_execution import fonts, seccomp, storage
from services.code_execution.cgroups import CgroupRoot
from services.code_execution.config import ExecutorConfig
from services.code_execution.interpreter import launcher
from services.code_execution.sessions import SessionManager, Slot

log = logging.getLogger("foundationallm.code_execution")


class HostSandbox:
    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        self.bwrap: str | None = None
        self.site_packages = config.site_packages()
        self.package_dir = launcher.PACKAGE_DIR
        self.font_lists: list[str] = []
        self.seccomp_filter: str | None = None  # the system call filter bwrap loads, once written
        self.report: dict[str, str] = {"isolation": "pending"}

    def probe(self, sessions: SessionManager) -> None:
        """Choose bwrap or the fallback, open the cgroup root, test tmpfs mounts (blocking: a thread)."""
        try:
            self.package_dir = launcher.install_package(self.config.sessions_dir / ".interpreter" / "fllm_interpreter")
        except OSError as error:  # the sources then: each interpreter compiles them as it starts
            log.warning("the interpreter package could not be compiled: %s", error)
        mode = self.config.sandbox
        found = launcher.find_bwrap() if mode != "none" else None
        problem = "disabled (FLLM_CODE_SANDBOX=none)" if mode == "none" else "bwrap is not installed"
        if found is not None:
            problem = launcher.bwrap_works(found) or ""
            self.bwrap = None if problem else found
        if self.bwrap is None and mode == "bwrap":
            raise RuntimeError(f"FLLM_CODE_SANDBOX=bwrap, but bwrap cannot run here: {problem}")
        if self.bwrap is None:
            log.warning("code runs WITHOUT a sandbox (rlimits only): %s", problem)
        syscalls = self.filter_syscalls() if self.bwrap is not None else "unfiltered (no bwrap)"
        if self.bwrap is not None:
            with contextlib.suppress(OSError):
                self.font_lists = fonts.font_lists(fonts.cache_dir())
        # One root per executor: the two code services of a chain may share FLLM_CODE_UID_BASE, and each
        # clears its root at start and removes it at stop.
        folder = zlib.crc32(str(self.config.sessions_dir).encode())
        cgroups, limits = CgroupRoot.open(f"fllm-code-{self.config.uid_base}-{folder:08x}")
        sessions.cgroups = cgroups
        sessions.quota = _quota_works(self.config.sessions_dir)
        bwrapped = self.bwrap is not None
        self.report = {
            "isolation": "bwrap" if bwrapped else f"none ({problem})",
            "network": "isolated" if bwrapped and self.config.deny_network else "shared",
            "filesystem": "private-root" if bwrapped else "host",
            "processes": "pid-namespace" if bwrapped else "host",
            "identity": "session-uid" if sessions.has_uids else "server-uid",
            "limits": limits if cgroups is not None else f"rlimits only: {limits}",
            "disk": "tmpfs-quota" if sessions.quota else "file-size-limit only (no tmpfs: not root)",
            "syscalls": syscalls,
        }

    def filter_syscalls(self) -> str:
        """Write the system call filter and check bwrap loads it (``self.bwrap`` chosen: a step of ``probe``);
        what the sandbox's calls are then."""
        mode = self.config.seccomp
        if mode == "off":
            return "unfiltered (FLLM_CODE_SECCOMP=off)"
        assert self.bwrap is not None
        path = self.config.sessions_dir / ".seccomp.bpf"
        try:
            refused = seccomp.write_filter(path)
            problem = launcher.bwrap_works(self.bwrap, seccomp_filter=str(path))
        except (seccomp.SeccompUnavailable, OSError) as error:
            problem = str(error)
        if problem:
            if mode == "on":
                raise RuntimeError(f"FLLM_CODE_SECCOMP=on, but the system call filter cannot be used: {problem}")
            log.warning("code runs without a system call filter: %s", problem)
            return f"unfiltered ({problem})"
        self.seccomp_filter = str(path)
        return f"seccomp ({refused} calls refused)"

    def build_fonts(self) -> None:
        """matplotlib's font list, for the sandboxes started from now on (blocking, seconds: a thread)."""
        try:
            self.font_lists = fonts.build_font_list(self.site_packages, fonts.cache_dir())
        except (OSError, subprocess.SubprocessError) as error:
            log.warning("matplotlib's font list could not be built: %s", error)

    def command(self, slot: Slot) -> list[str]:
        """The command line that starts one interpreter for ``slot``."""
        limits = self.config.limits
        spec = launcher.LaunchSpec(
            data_dir=str(slot.data_dir), uid=slot.uid, limits=limits.rlimits(), site_packages=self.site_packages,
            tmp_bytes=limits.tmp_bytes, deny_network=self.config.deny_network,
            preimport=list(self.config.preimport), package_dir=self.package_dir, font_lists=self.font_lists,
        )
        return launcher.bwrap_command(spec, self.bwrap) if self.bwrap else launcher.direct_command(spec)


def _quota_works(sessions_dir: Path) -> bool:
    probe = sessions_dir / ".quota-probe"
    probe.mkdir(exist_ok=True)
    try:
        return storage.mount_quota(str(probe), 1024 * 1024, None) is None
    finally:
        if storage.is_mount(str(probe)):
            storage.unmount(str(probe))
        probe.rmdir()
