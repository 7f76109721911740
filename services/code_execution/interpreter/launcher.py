"""How the executor starts one sandboxed interpreter: the bubblewrap command line.

The sandbox's root is an empty tmpfs with, read-only: ``/usr`` (the C library and the interpreter's
shared libraries), the Python installation, the allowed site-packages folders and this package (at
``/sandbox/fllm_interpreter``). Nothing else of the host: no ``/etc``, no ``/home``, no project tree.
Writable: the session's data folder at ``/mnt/data`` (a size-limited tmpfs the executor mounted on
the host), and size-limited tmpfs at ``/tmp`` and ``/dev/shm`` that live as long as the sandbox.

As root, bwrap runs in its privileged mode: every namespace of ``--unshare-all`` except the user
namespace (in one, the session uid would map to the host's root), and the interpreter drops to the
session's uid itself before it runs anything (``sandbox.drop_identity``). As another user, bwrap needs
unprivileged user namespaces and the code runs as the server's uid.
"""

from __future__ import annotations

import compileall
import contextlib
import functools
import json
import os
import py_compile
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = str(Path(__file__).resolve().parent)
SANDBOX_PACKAGE = "/sandbox/fllm_interpreter"
MNT_DATA = "/mnt/data"
MPL_CACHE = "/tmp/.cache/matplotlib"  # matplotlib's cache folder in the sandbox (HOME=/tmp)
BOOTSTRAP = "import sys; sys.path.insert(0, {where!r}); from {package}.interpreter import main; main()"
# The whole environment code gets: nothing of the server's (no FLLM_*, no tokens).
CHILD_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "MPLBACKEND": "Agg",
    "PYTHONIOENCODING": "utf-8",
}
NAMESPACES_AS_ROOT = ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try")


@functools.cache
def python_executable() -> str:
    """The real interpreter binary (a venv's ``python`` is a link to it)."""
    return os.path.realpath(sys.executable)


def read_only_paths(site_packages: list[str]) -> list[str]:
    """The smallest set of host folders the interpreter needs, none inside another."""
    wanted = ["/usr", os.path.realpath(sys.base_prefix), *(os.path.realpath(p) for p in site_packages)]
    wanted.append(os.path.dirname(python_executable()))
    kept: list[str] = []
    for path in sorted({p for p in wanted if os.path.isdir(p)}, key=len):
        if not any(path == top or path.startswith(top + "/") for top in kept):
            kept.append(path)
    return kept


def _root_links() -> list[str]:
    """/bin, /lib, ... as on the host: links into /usr (merged /usr) or read-only folders."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


_PRIVATE_MOUNTS = {"/tmp", "/dev", "/dev/shm", "/proc"}  # mounted by then, with their own modes


def _open_parents(paths: list[str]) -> list[str]:
    """bwrap creates missing parents of a mount point 0700 (root's): after the uid drop they would hide
    what is bound below them. Make them 0755 first."""
    parents: set[str] = set()
    for path in paths:
        parts = path.strip("/").split("/")[:-1]
        parents.update("/" + "/".join(parts[: depth + 1]) for depth in range(len(parts)))
    args: list[str] = []
    for parent in sorted(parents - _PRIVATE_MOUNTS, key=lambda p: (p.count("/"), p)):
        if not os.path.islink(parent) and not any(parent == t or parent.startswith(t + "/") for t in paths):
            args += ["--perms", "0755", "--dir", parent]
    return args


@functools.lru_cache(maxsize=16)
def _host_binds(site_packages: tuple[str, ...]) -> tuple[str, ...]:
    """The host folders every sandbox gets read-only, their open parents, /bin and the like. The same for
    every start of a process (each one resolves links on disk: ~0.3 ms), so worked out once."""
    read_only = read_only_paths(list(site_packages))
    args = _open_parents([*read_only, SANDBOX_PACKAGE, MNT_DATA, "/var/tmp"])
    for path in read_only:
        args += ["--ro-bind", path, path]
    return (*args, *_root_links())


@dataclass(frozen=True)
class LaunchSpec:
    data_dir: str  # host folder bound at /mnt/data
    uid: int | None  # the session's uid (applied when the executor runs as root)
    limits: dict[str, int] = field(default_factory=dict)  # rlimits (sandbox.RLIMITS names)
    site_packages: list[str] = field(default_factory=list)
    tmp_bytes: int = 256 * 1024 * 1024
    shm_bytes: int = 64 * 1024 * 1024
    deny_network: bool = True
    preimport: list[str] = field(default_factory=list)  # imported before the interpreter is ready
    package_dir: str = PACKAGE_DIR  # this package, or its compiled copy (install_package)
    font_lists: list[str] = field(default_factory=list)  # matplotlib's, bound read-only (code_execution.fonts)


def install_package(target: Path) -> str:
    """A copy of this package in ``target``, compiled: without it, every sandbox would compile the modules
    the server never imports (-B: never cached) at each start. Unchecked-hash .pyc files: nothing changes
    the copy, so the interpreter reads them without checking the sources. Returns the copy's folder."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compileall.compile_dir(target, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    for folder, _, _ in os.walk(target):
        os.chmod(folder, 0o755)
    return str(target)


def bwrap_command(spec: LaunchSpec, bwrap: str = "bwrap") -> list[str]:
    privileged = os.geteuid() == 0
    args = [bwrap, *(NAMESPACES_AS_ROOT if privileged else ("--unshare-all",))]
    if not spec.deny_network:
        args.append("--share-net")
    args += ["--die-with-parent", "--new-session"]
    if privileged and spec.uid is None:  # no session uid to drop to: root inside, but without capabilities
        args += ["--cap-drop", "ALL"]
    # The private /tmp first: an interpreter installed under the host's /tmp (a checkout there, say) is
    # then bound over it, read-only, instead of being hidden by it.
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(spec.shm_bytes), "--tmpfs", "/dev/shm"]
    args += ["--perms", "1777", "--size", str(spec.tmp_bytes), "--tmpfs", "/tmp"]
    if spec.font_lists:  # matplotlib's cache folder with its font list in it (it needs the folder writable)
        args += ["--perms", "1777", "--dir", os.path.dirname(MPL_CACHE), "--perms", "1777", "--dir", MPL_CACHE]
        for font_list in spec.font_lists:
            args += ["--ro-bind", font_list, f"{MPL_CACHE}/{os.path.basename(font_list)}"]
    args += _host_binds(tuple(spec.site_packages))
    args += ["--ro-bind", spec.package_dir, SANDBOX_PACKAGE]
    args += ["--symlink", "/tmp", "/var/tmp"]
    args += ["--bind", spec.data_dir, MNT_DATA, "--chdir", MNT_DATA]
    config = {"uid": spec.uid if privileged else None, "limits": spec.limits, "site_packages": spec.site_packages,
              "cwd": MNT_DATA, "env": CHILD_ENV, "package_parent": os.path.dirname(SANDBOX_PACKAGE),
              "preimport": spec.preimport}
    bootstrap = BOOTSTRAP.format(where=os.path.dirname(SANDBOX_PACKAGE), package=os.path.basename(SANDBOX_PACKAGE))
    return [*args, python_executable(), "-I", "-S", "-B", "-c", bootstrap, json.dumps(config)]


def direct_command(spec: LaunchSpec) -> list[str]:
    """No bwrap on this host: the interpreter alone, with its rlimits and uid (reported as unsandboxed)."""
    config = {"uid": spec.uid if os.geteuid() == 0 else None, "limits": spec.limits,
              "site_packages": spec.site_packages, "cwd": spec.data_dir, "env": CHILD_ENV,
              "package_parent": os.path.dirname(spec.package_dir), "preimport": spec.preimport}
    package = os.path.basename(spec.package_dir)
    bootstrap = BOOTSTRAP.format(where=os.path.dirname(spec.package_dir), package=package)
    return [python_executable(), "-I", "-S", "-B", "-c", bootstrap, json.dumps(config)]


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def bwrap_works(bwrap: str, timeout_s: float = 10.0, seccomp_filter: str | None = None) -> str | None:
    """None when bwrap can build this sandbox here (with the system call filter in ``seccomp_filter``, when
    given), else why not (its error message)."""
    probe = bwrap_command(LaunchSpec(data_dir="/", uid=None), bwrap)
    probe = probe[: probe.index(python_executable())] + [python_executable(), "-I", "-S", "-c", "pass"]
    try:
        with filtered(probe, seccomp_filter) as (argv, fds):
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s,
                                  check=False, pass_fds=fds)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if done.returncode == 0 else done.stderr.decode(errors="replace").strip()[:500] or "failed"


@contextlib.contextmanager
def filtered(argv: list[str], seccomp_filter: str | None) -> Iterator[tuple[list[str], tuple[int, ...]]]:
    """A bwrap command line that loads the system call filter in ``seccomp_filter`` (``--seccomp FD``: bwrap
    reads the program from a descriptor it inherits), and the descriptors to pass on; nothing to add without one."""
    if seccomp_filter is None:
        yield argv, ()
        return
    fd = os.open(seccomp_filter, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield [argv[0], "--seccomp", str(fd), *argv[1:]], (fd,)
    finally:
        os.close(fd)
