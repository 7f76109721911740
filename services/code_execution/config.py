"""Limits and sizes of the code executor, from FLLM_CODE_* variables with local defaults."""

from __future__ import annotations

import os
import site
import zlib
from dataclasses import dataclass, field
from pathlib import Path

MAX_TIMEOUT_S = 220  # the Dynamic Sessions limit per execution
MAX_SESSIONS_LIMIT = 600  # the Dynamic Sessions pool maximum
MIB = 1024 * 1024


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


UID_RANGE = 65_536
UID_RANGES = 60_000  # 100_000 + 60_000 * 65_536 stays below the 32-bit uid limit


def uid_range_of(sessions_dir: Path) -> int:
    """First session uid of an executor, from its sessions folder.

    A disposed session's stray processes are killed by uid, host-wide; two executors on one host
    (two chains, or both code services) must therefore never hand out the same uids.
    """
    return 100_000 + zlib.crc32(str(sessions_dir).encode()) % UID_RANGES * UID_RANGE


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 1024 * MIB  # RLIMIT_AS
    cpu_seconds: int = 1800  # RLIMIT_CPU: the CPU budget of a session's interpreter over its life
    processes: int = 64  # RLIMIT_NPROC (enforced for the per-session uid; root is exempt)
    file_size_bytes: int = 256 * MIB  # RLIMIT_FSIZE: largest file code may write
    open_files: int = 1024  # RLIMIT_NOFILE

    def as_worker_config(self) -> dict[str, int]:
        return {
            "address_space": self.memory_bytes,
            "cpu_seconds": self.cpu_seconds,
            "processes": self.processes,
            "file_size": self.file_size_bytes,
            "open_files": self.open_files,
            "core": 0,
        }


def _flag(name: str) -> bool:
    """A switch that is on unless set to off/false/0/no."""
    return os.environ.get(name, "true").lower() not in {"0", "false", "off", "no"}


def zygote_enabled() -> bool:
    """Interpreters forked from a zygote (``FLLM_CODE_ZYGOTE``)."""
    return _flag("FLLM_CODE_ZYGOTE")


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
    deny_network: bool = True  # private network namespace where the platform allows it
    mount_namespace: bool = True  # /mnt/data as a real bind mount where the platform allows it
    drop_privileges: bool = True  # a uid per session when the server runs as root
    uid_base: int = 600_000
    uid_count: int = UID_RANGE
    executions_kept: int = 256  # execution records kept per session for GET /executions/{id}
    spawn_timeout_s: float = 15.0
    zygote: bool = True  # interpreters forked from a started one (zygote.py), not each started anew

    @classmethod
    def from_env(cls, data_dir: Path, service: str, uid_base: int | None = None) -> ExecutorConfig:
        """``<data_dir>/sessions/<service>``; each service that runs code gets its own uid range."""
        sessions_dir = data_dir.resolve() / "sessions" / service
        limits = SandboxLimits(
            memory_bytes=_env_int("FLLM_CODE_MEMORY_MB", 1024) * MIB,
            cpu_seconds=_env_int("FLLM_CODE_CPU_SECONDS", 1800),
            processes=_env_int("FLLM_CODE_MAX_PROCESSES", 64),
            file_size_bytes=_env_int("FLLM_CODE_MAX_FILE_MB", 256) * MIB,
            open_files=_env_int("FLLM_CODE_MAX_OPEN_FILES", 1024),
        )
        return cls(
            sessions_dir=sessions_dir,
            pool_size=_env_int("FLLM_CODE_POOL_SIZE", 4),
            max_sessions=_env_int("FLLM_CODE_MAX_SESSIONS", MAX_SESSIONS_LIMIT),
            cooldown_s=_env_float("FLLM_CODE_COOLDOWN_S", 300.0),
            default_timeout_s=min(_env_float("FLLM_CODE_DEFAULT_TIMEOUT_S", 120.0), MAX_TIMEOUT_S),
            output_max_length=_env_int("FLLM_CODE_OUTPUT_MAX_LENGTH", 4096),
            max_upload_bytes=_env_int("FLLM_CODE_MAX_UPLOAD_MB", 128) * MIB,
            limits=limits,
            deny_network=_flag("FLLM_CODE_DENY_NETWORK"),
            mount_namespace=_flag("FLLM_CODE_MOUNT_NAMESPACE"),
            drop_privileges=_flag("FLLM_CODE_DROP_PRIVILEGES"),
            zygote=zygote_enabled(),
            uid_base=_env_int("FLLM_CODE_UID_BASE", uid_base if uid_base is not None else uid_range_of(sessions_dir)),
        )

    def worker_config(self) -> dict[str, object]:
        return {
            "limits": self.limits.as_worker_config(),
            "deny_network": self.deny_network,
            "mount_namespace": self.mount_namespace,
            # The interpreter starts without site (-S): it gets this server's site-packages folders instead.
            "site_packages": [folder for folder in site.getsitepackages() if os.path.isdir(folder)],
        }
