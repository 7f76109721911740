"""Limits and sizes of the code executor: ``FLLM_CODE_*`` variables (``CodeExecutionSettings``),
turned into the executor's ``ExecutorConfig`` for one service's sessions folder."""

from __future__ import annotations

import re
import site
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode, SettingsConfigDict

from services.common.settings.base import FllmSettings, lower

MAX_TIMEOUT_S = 220  # the Dynamic Sessions limit per execution
MAX_SESSIONS_LIMIT = 600  # the Dynamic Sessions pool maximum
MIB = 1024 * 1024
UID_RANGE = 65_536
UID_RANGES = 60_000  # 100_000 + 60_000 * 65_536 stays below the 32-bit uid limit
# The services that run code, each with a uid range of its own after FLLM_CODE_UID_BASE: sessions of the two
# must never share a uid (a uid's process limit, the sweep of a disposed session's strays).
CODE_SERVICES = ("dynamic-sessions", "code-session-api")

SandboxMode = Literal["auto", "bwrap", "none"]
SeccompMode = Literal["auto", "on", "off"]
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def module_list(value: object) -> object:
    """``numpy,pandas`` (or ``none``/empty) -> dotted module names; anything else is refused by name."""
    if not isinstance(value, str):
        return value
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if names in ((), ("none",)):
        return ()
    for name in names:
        if not MODULE_NAME.fullmatch(name):
            raise ValueError(f"'{name[:64]}' is not a module name")
    return names


class CodeExecutionSettings(FllmSettings):
    """The executor's ``FLLM_CODE_*`` variables (a bad value: ``SettingsError`` naming the variable)."""

    model_config = SettingsConfigDict(env_prefix="FLLM_CODE_")

    pool_size: int = Field(4, ge=0, description="warm sandboxes waiting for a new session")
    max_sessions: int = Field(MAX_SESSIONS_LIMIT, ge=1)
    cooldown_s: float = Field(300.0, gt=0, description="idle time after which a session is disposed of")
    default_timeout_s: float = Field(120.0, gt=0)
    output_max_length: int = Field(4096, ge=0)
    max_upload_mb: int = Field(128, ge=1)
    memory_mb: int = Field(1024, ge=16, description="a session's memory (cgroup), and each process's (RLIMIT_AS)")
    cpu_cores: float = Field(1.0, gt=0, description="a session's CPU share (cgroup CFS quota), in cores")
    cpu_seconds: int = Field(1800, ge=1, description="CPU budget of one process of a session (RLIMIT_CPU)")
    max_processes: int = Field(64, ge=4, description="processes of a session (cgroup pids; RLIMIT_NPROC per uid)")
    disk_mb: int = Field(500, ge=1, description="a session's /mnt/data (size of its tmpfs)")
    tmp_mb: int = Field(256, ge=1, description="a session's /tmp (size of its tmpfs)")
    max_file_mb: int = Field(256, ge=1, description="largest file code may write (RLIMIT_FSIZE)")
    max_open_files: int = Field(1024, ge=16)
    deny_network: bool = True
    drop_privileges: bool = Field(True, description="a uid per session when the server runs as root")
    uid_base: int | None = Field(
        None, ge=1000, description="first session uid of this host's code services: the emulator's range, then "
        "the code session API's (65536 uids each); unset: a range from each one's sessions folder")
    sandbox: Annotated[SandboxMode, BeforeValidator(lower)] = Field(
        "auto", description="bwrap: required; auto: bwrap where it works; none: no sandbox")
    preimport: Annotated[tuple[str, ...], NoDecode, BeforeValidator(module_list)] = Field(
        (), description="modules a warm interpreter imports before a session takes it (comma-separated)")
    seccomp: Annotated[SeccompMode, BeforeValidator(lower)] = Field(
        "auto", description="on: the system call filter required in bwrap; auto: where libseccomp loads; off")


def uid_range_of(sessions_dir: Path) -> int:
    """First session uid of an executor, from its sessions folder.

    A disposed session's stray processes are killed by uid, host-wide; two executors on one host
    (two chains, or both code services) must therefore never hand out the same uids.
    """
    return 100_000 + zlib.crc32(str(sessions_dir).encode()) % UID_RANGES * UID_RANGE


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 1024 * MIB  # cgroup memory of the session; RLIMIT_AS of each process
    cpu_cores: float = 1.0  # cgroup CPU quota of the session
    cpu_seconds: int = 1800  # RLIMIT_CPU of each process
    processes: int = 64  # cgroup pids of the session; RLIMIT_NPROC of its uid
    disk_bytes: int = 500 * MIB  # /mnt/data tmpfs
    tmp_bytes: int = 256 * MIB  # /tmp tmpfs
    file_size_bytes: int = 256 * MIB  # RLIMIT_FSIZE
    open_files: int = 1024  # RLIMIT_NOFILE

    def rlimits(self) -> dict[str, int]:
        return {
            "address_space": self.memory_bytes,
            "cpu_seconds": self.cpu_seconds,
            "processes": self.processes,
            "file_size": self.file_size_bytes,
            "open_files": self.open_files,
            "core": 0,
        }


@dataclass(frozen=True)
class ExecutorConfig:
    """Everything the executor needs; ``sessions_dir`` holds one folder per live session."""

    sessions_dir: Path
    pool_size: int = 2
    max_sessions: int = MAX_SESSIONS_LIMIT
    cooldown_s: float = 300.0
    default_timeout_s: float = 120.0  # the BYOC base image's defaultTimeoutSeconds
    max_timeout_s: float = MAX_TIMEOUT_S
    output_max_length: int = 4096  # outputStreamsMaxLength default
    max_upload_bytes: int = 128 * MIB
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    deny_network: bool = True
    drop_privileges: bool = True
    uid_base: int = 600_000
    uid_count: int = UID_RANGE
    executions_kept: int = 256  # execution records kept per session for GET /executions/{id}
    spawn_timeout_s: float = 15.0
    sandbox: SandboxMode = "auto"
    seccomp: SeccompMode = "auto"
    preimport: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, data_dir: Path, service: str, uid_base: int | None = None) -> ExecutorConfig:
        """``<data_dir>/sessions/<service>``; each service that runs code gets its own uid range."""
        env = CodeExecutionSettings()
        sessions_dir = data_dir.resolve() / "sessions" / service
        limits = SandboxLimits(
            memory_bytes=env.memory_mb * MIB, cpu_cores=env.cpu_cores, cpu_seconds=env.cpu_seconds,
            processes=env.max_processes, disk_bytes=env.disk_mb * MIB, tmp_bytes=env.tmp_mb * MIB,
            file_size_bytes=env.max_file_mb * MIB, open_files=env.max_open_files,
        )
        return cls(
            sessions_dir=sessions_dir, pool_size=env.pool_size, max_sessions=env.max_sessions,
            cooldown_s=env.cooldown_s, default_timeout_s=min(env.default_timeout_s, MAX_TIMEOUT_S),
            output_max_length=env.output_max_length, max_upload_bytes=env.max_upload_mb * MIB, limits=limits,
            deny_network=env.deny_network, drop_privileges=env.drop_privileges, sandbox=env.sandbox,
            seccomp=env.seccomp, preimport=env.preimport,
            uid_base=(env.uid_base + UID_RANGE * CODE_SERVICES.index(service)) if env.uid_base
            else (uid_base if uid_base is not None else uid_range_of(sessions_dir)),
        )

    @staticmethod
    def site_packages() -> list[str]:
        """The interpreter starts without site (-S): it gets this server's site-packages folders instead."""
        return [folder for folder in site.getsitepackages() if Path(folder).is_dir()]
