"""FLLM_CODE_* settings and the bwrap command line they lead to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.code_execution import seccomp
from services.code_execution.config import MIB, CodeExecutionSettings, ExecutorConfig
from services.code_execution.host import HostSandbox
from services.code_execution.interpreter import launcher
from services.common.settings import SettingsError

REPO = Path(__file__).resolve().parents[2]


def test_settings_read_the_fllm_code_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {"FLLM_CODE_MEMORY_MB": "512", "FLLM_CODE_DISK_MB": "64", "FLLM_CODE_CPU_CORES": "0.25",
                        "FLLM_CODE_DENY_NETWORK": "off", "FLLM_CODE_SANDBOX": "none", "FLLM_CODE_POOL_SIZE": "0",
                        "FLLM_CODE_DEFAULT_TIMEOUT_S": "999", "FLLM_CODE_UID_BASE": "200000"}.items():
        monkeypatch.setenv(name, value)
    config = ExecutorConfig.from_env(tmp_path, "dynamic-sessions")
    assert config.sessions_dir == tmp_path.resolve() / "sessions" / "dynamic-sessions"
    assert config.limits.memory_bytes == 512 * MIB and config.limits.disk_bytes == 64 * MIB
    assert config.limits.cpu_cores == 0.25 and config.deny_network is False and config.sandbox == "none"
    assert config.pool_size == 0 and config.default_timeout_s == 220 and config.uid_base == 200_000
    # The other code service takes the range after it: the two never hand out the same uid.
    assert ExecutorConfig.from_env(tmp_path, "code-session-api").uid_base == 200_000 + 65_536


def test_settings_refuse_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLLM_CODE_SANDBOX", "chroot")
    with pytest.raises(SettingsError, match="FLLM_CODE_SANDBOX"):
        CodeExecutionSettings()
    monkeypatch.setenv("FLLM_CODE_SANDBOX", "auto")
    monkeypatch.setenv("FLLM_CODE_SECCOMP", "maybe")
    with pytest.raises(SettingsError, match="FLLM_CODE_SECCOMP"):
        CodeExecutionSettings()
    monkeypatch.setenv("FLLM_CODE_SECCOMP", "ON")
    assert CodeExecutionSettings().seccomp == "on"
    monkeypatch.setenv("FLLM_CODE_MEMORY_MB", "-1")
    with pytest.raises(SettingsError, match="FLLM_CODE_MEMORY_MB"):
        CodeExecutionSettings()


def test_bwrap_binds_nothing_of_the_project_but_site_packages_and_the_interpreter() -> None:
    site_packages = ExecutorConfig.site_packages()
    spec = launcher.LaunchSpec(data_dir="/srv/session/data", uid=123_456, site_packages=site_packages)
    command = launcher.bwrap_command(spec)
    binds = [(command[i], command[i + 1], command[i + 2]) for i, arg in enumerate(command)
             if arg in ("--ro-bind", "--bind")]
    for kind, source, target in binds:
        inside_repo = source == str(REPO) or source.startswith(str(REPO) + "/")
        allowed = source in site_packages or source == launcher.PACKAGE_DIR
        assert not inside_repo or allowed, source
        assert kind == "--ro-bind" or target == launcher.MNT_DATA
    assert ("--bind", "/srv/session/data", "/mnt/data") in binds
    for flag in ("--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--proc"):
        assert flag in command or (flag.startswith("--unshare") and "--unshare-all" in command)
    if os.geteuid() == 0:  # privileged bwrap: no user namespace (it would map the session uid to root)
        assert "--unshare-user" not in command and "--unshare-all" not in command


@pytest.mark.parametrize("mode", ["auto", "on", "off"])
def test_the_system_call_filter_per_fllm_code_seccomp(mode: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    host = HostSandbox(ExecutorConfig(sessions_dir=tmp_path, seccomp=mode))  # type: ignore[arg-type]
    host.bwrap = launcher.find_bwrap()
    if host.bwrap is None or launcher.bwrap_works(host.bwrap):
        pytest.skip("bwrap cannot run here")
    report = host.filter_syscalls()
    if mode == "off":
        assert report == "unfiltered (FLLM_CODE_SECCOMP=off)" and host.seccomp_filter is None
        return
    assert report.startswith("seccomp (") and host.seccomp_filter == str(tmp_path / ".seccomp.bpf")
    assert os.stat(host.seccomp_filter).st_mode & 0o777 == 0o600

    def missing(path: Path) -> int:
        raise seccomp.SeccompUnavailable("libseccomp cannot be loaded (not here)")

    monkeypatch.setattr(seccomp, "write_filter", missing)
    host.seccomp_filter = None
    if mode == "on":  # required: the service refuses to start rather than run code unfiltered
        with pytest.raises(RuntimeError, match="FLLM_CODE_SECCOMP=on"):
            host.filter_syscalls()
    else:
        assert host.filter_syscalls() == "unfiltered (libseccomp cannot be loaded (not here))"
    assert host.seccomp_filter is None
