"""One session's interpreter: a persistent Python process that the executor drives over two pipes.

Started as ``python -I -B worker.py '<json config>'`` with a scrubbed environment and its own process
group. It is self-contained (standard library only, nothing heavy imported) because ``-I`` keeps the
project off ``sys.path``; the executor imports this module only for the frame helpers.

Protocol: frames of a 4-byte big-endian length followed by one UTF-8 JSON object. Requests arrive on
the descriptor that was stdin and answers leave on the one that was stdout; both are moved to private
descriptors at start-up (not inherited by subprocesses) and 0/1/2 are pointed at /dev/null, so code
that writes to the real file descriptors cannot corrupt the protocol by accident.

    -> (start-up)                                 <- {"op": "ready", "pid", "network", "filesystem", "uid"}
    -> {"op": "attach", "data_dir", "tmp_dir", "uid"}   <- {"ok": true, "filesystem", "uid"}
    -> {"op": "exec", "code", "max_output", "named_results"}
                                                  <- {"status", "stdout", "stderr", "result", "error", ...}

Sandbox, applied before any user code runs (each step falls back gracefully and is reported):
- resource limits: address space, CPU seconds, processes, file size, open files, no core dumps;
- network: a private, empty network namespace (``unshare(CLONE_NEWNET)``, loopback only) when root;
- files: a private mount namespace where the session folder is bind-mounted at ``/mnt/data`` and a
  per-session folder at ``/tmp`` and ``/var/tmp`` (cwd ``/mnt/data``; a private ``/dev/shm``); without
  it, cwd is the session folder and paths under ``/mnt/data`` are rewritten to it by wrappers around
  ``open`` and the ``os`` path functions;
- identity: when root, the attach step switches to the session's own uid/gid (no groups,
  ``no_new_privs``), so code cannot read the server's ``/proc/<pid>/environ`` or other sessions' files.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import json
import linecache
import os
import signal
import struct
import sys
import time
import traceback
import types
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
CELL_PREFIX = "<cell-"
MNT_DATA = "/mnt/data"
RESULT_VALUE_LIMIT = 1024 * 1024

# Linux constants (not all exposed by the os module of Python 3.11).
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SIOCSIFFLAGS, IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40


# --- framing (also used by the executor) ---


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def decode_header(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    return length


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> dict[str, Any] | None:
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    body = _read_exactly(fd, decode_header(header))
    return None if body is None else json.loads(body)


def write_frame(fd: int, message: dict[str, Any]) -> None:
    view = memoryview(encode_frame(message))
    while view:
        view = view[os.write(fd, view) :]


# --- output capture ---


class Capture(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters and counts everything written."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.parts: list[str] = []
        self.kept = 0
        self.size_bytes = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.size_bytes += len(text) if text.isascii() else len(text.encode("utf-8", "replace"))
        room = self.limit - self.kept
        if room > 0 and text:
            piece = text[:room]
            self.parts.append(piece)
            self.kept += len(piece)
        return len(text)

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def value(self) -> str:
        return _clean("".join(self.parts))


def _clean(text: str) -> str:
    """Text that survives JSON and UTF-8 encoding (lone surrogates replaced)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


# --- sandbox ---


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
        _LIBC.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return _LIBC


def _apply_limits(limits: dict[str, int]) -> None:
    import resource

    names = {
        "address_space": resource.RLIMIT_AS,
        "cpu_seconds": resource.RLIMIT_CPU,
        "processes": resource.RLIMIT_NPROC,
        "file_size": resource.RLIMIT_FSIZE,
        "open_files": resource.RLIMIT_NOFILE,
        "core": resource.RLIMIT_CORE,
    }
    for name, value in limits.items():
        if name in names and value >= 0:
            # CPU: SIGXCPU at the soft limit (reported), SIGKILL later if code ignores it. The gap is wide
            # because a loaded machine checks CPU time coarsely and may find both limits passed at once.
            hard = value + 5 if name == "cpu_seconds" else value
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(names[name], (value, hard))


def _loopback_up() -> None:
    import fcntl
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING)
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, request)


def _mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> bool:
    encode = lambda text: None if text is None else text.encode()  # noqa: E731
    return _libc().mount(encode(source), encode(target), encode(fstype), flags, encode(data)) == 0


def _isolate(config: dict[str, Any]) -> tuple[str, bool]:
    """Enter private network and mount namespaces where allowed; report what applies."""
    if os.geteuid() != 0:
        return "shared", False
    libc = _libc()
    network = "shared"
    if config.get("deny_network", True) and libc.unshare(CLONE_NEWNET) == 0:
        network = "isolated"
        with contextlib.suppress(OSError):
            _loopback_up()
    private_mounts = False
    if config.get("mount_namespace", True) and libc.unshare(CLONE_NEWNS) == 0:
        private_mounts = _mount(None, "/", flags=MS_REC | MS_PRIVATE) and _mount(
            "tmpfs", "/mnt", "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755"
        )
        private_mounts = private_mounts and _expose(_interpreter_paths())
        if private_mounts and os.path.isdir("/dev/shm"):  # no shared memory folder between sessions
            _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    return network, private_mounts


def _interpreter_paths() -> list[str]:
    paths = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(path for path in sys.path if path and os.path.isdir(path))
    return sorted(os.path.realpath(path) for path in paths)


def _blocked(paths: list[str]) -> dict[str, set[str]]:
    """Folders others cannot enter (no o+x) on the way to ``paths``, with the children needed inside."""
    blocked: dict[str, set[str]] = {}
    for path in paths:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            ancestor = "/" + "/".join(parts[:depth])
            if not os.stat(ancestor).st_mode & 0o001:
                blocked.setdefault(ancestor, set()).add(f"{ancestor}/{parts[depth]}")
                break
    return blocked


def _expose(paths: list[str]) -> bool:
    """Keep the interpreter importable after the uid drop when it is installed behind a private folder
    (e.g. a Python under /root): cover that folder with an empty tmpfs and bind back, read-only, only
    the children it needs. Everything else in the folder stays out of sight of the code."""
    for number, (ancestor, children) in enumerate(_blocked(paths).items()):
        staged = _stage(sorted(children), f"stage-{number}")
        if staged is None or not _mount("tmpfs", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755"):
            return False
        if not _bind_back_read_only(staged):
            return False
    return True


def _stage(paths: list[str], tag: str) -> list[tuple[str, str]] | None:
    """Bind each path to a folder under the private /mnt, before something is mounted over it."""
    staged = []
    for index, path in enumerate(paths):
        stage = f"/mnt/.{tag}-{index}"
        os.mkdir(stage)
        if not _mount(path, stage, flags=MS_BIND | MS_REC):
            return None
        staged.append((path, stage))
    return staged


def _bind_back_read_only(staged: list[tuple[str, str]]) -> bool:
    """Put staged paths back where they were, read-only, over whatever now covers them."""
    for path, stage in staged:
        os.makedirs(path, exist_ok=True)
        if not (_mount(stage, path, flags=MS_BIND | MS_REC)
                and _mount(None, path, flags=MS_REMOUNT | MS_BIND | MS_RDONLY)):
            return False
        _libc().umount2(stage.encode(), MNT_DETACH)
        os.rmdir(stage)
    return True


class Sandbox:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.network, self.private_mounts = _isolate(config)
        self.filesystem = "pending"
        self.uid: int | None = None

    def attach(self, data_dir: str, tmp_dir: str, uid: int | None) -> None:
        if not (self.private_mounts and self._bind_session(data_dir, tmp_dir)):
            self.filesystem = "path-rewrite"
            _install_path_rewrite(data_dir)
            os.environ.update(HOME=tmp_dir, TMPDIR=tmp_dir)
            os.chdir(data_dir)
        # Without private mounts a uid drop would lose an interpreter installed behind a private folder.
        can_drop = self.private_mounts or not _blocked(_interpreter_paths())
        if uid is not None and os.geteuid() == 0 and can_drop:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            self.uid = uid
        libc = _libc()
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # credentials changed: set it again
        if "tempfile" in sys.modules:  # forget a temp folder looked up before TMPDIR changed
            sys.modules["tempfile"].tempdir = None

    def _bind_session(self, data_dir: str, tmp_dir: str) -> bool:
        os.mkdir(MNT_DATA)
        # /tmp and /var/tmp are the session's own: nothing is left for, or read from, another session.
        # /tmp last: the sources may themselves lie under /tmp.
        targets = [(data_dir, MNT_DATA)] + [(tmp_dir, "/var/tmp")] * os.path.isdir("/var/tmp") + [(tmp_dir, "/tmp")]
        # An interpreter or site-packages installed under /tmp (a checkout there) must stay importable.
        covered = [path for path in _interpreter_paths()
                   if any(path == top or path.startswith(top + "/") for top in ("/tmp", "/var/tmp"))]
        staged = _stage(covered, "keep")
        if staged is None:
            return False
        for source, target in targets:
            if not _mount(source, target, flags=MS_BIND | MS_NOSUID | MS_NODEV):
                return False
        if not _bind_back_read_only(staged):
            return False
        self.filesystem = "mount-namespace"
        os.environ.update(HOME="/tmp", TMPDIR="/tmp")
        os.chdir(MNT_DATA)
        return True


def _install_path_rewrite(root: str) -> None:
    """Map ``/mnt/data[/...]`` to the session folder for open() and the os path functions."""

    def mapped(path: Any) -> Any:
        raw = os.fspath(path) if isinstance(path, str | os.PathLike) else path
        if isinstance(raw, str) and (raw == MNT_DATA or raw.startswith(MNT_DATA + "/")):
            return root + raw[len(MNT_DATA) :]
        return path

    def wrap_first(fn: Any) -> Any:
        def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(mapped(path), *args, **kwargs)

        wrapper.__name__ = wrapper.__qualname__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = fn.__doc__
        return wrapper

    def wrap_two(fn: Any) -> Any:
        def wrapper(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(mapped(src), mapped(dst), *args, **kwargs)

        wrapper.__name__ = wrapper.__qualname__ = getattr(fn, "__name__", "wrapper")
        return wrapper

    builtins.open = io.open = wrap_first(io.open)
    for name in ("open", "stat", "lstat", "listdir", "scandir", "mkdir", "rmdir", "remove", "unlink", "chdir",
                 "access", "utime", "chmod", "truncate"):
        setattr(os, name, wrap_first(getattr(os, name)))
    for name in ("rename", "replace", "symlink", "link"):
        setattr(os, name, wrap_two(getattr(os, name)))


# --- execution ---


def _names_of(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Tuple | ast.List) and all(isinstance(e, ast.Name) for e in node.elts):
        return [e.id for e in node.elts]  # type: ignore[attr-defined]
    return []


def last_statement_names(tree: ast.Module) -> list[str]:
    """FoundationaLLM's rule: the variables a final bare-name expression or assignment names."""
    if not tree.body:
        return []
    last = tree.body[-1]
    if isinstance(last, ast.Expr):
        return _names_of(last.value)
    if isinstance(last, ast.Assign):
        names: list[str] = []
        for target in last.targets:
            found = _names_of(target)
            if not found:
                return []
            names.extend(found)
        return names
    return []


class _Encoder(json.JSONEncoder):
    """JSON for the values FoundationaLLM's code session API serialises (libraries only if loaded)."""

    def default(self, o: Any) -> Any:
        import datetime
        import decimal
        import uuid

        if isinstance(o, datetime.datetime | datetime.date | datetime.time):
            return o.isoformat()
        if isinstance(o, decimal.Decimal):
            return float(o)
        if isinstance(o, uuid.UUID):
            return str(o)
        if isinstance(o, set | frozenset):
            return list(o)
        if isinstance(o, bytes | bytearray):
            return o.decode("utf-8", errors="replace")
        module = type(o).__module__.split(".")[0]
        if module in ("numpy", "pandas"):
            for method, args in (("isoformat", ()), ("tolist", ()), ("item", ()), ("to_dict", ())):
                if hasattr(o, method):
                    return getattr(o, method)(*args)
        return super().default(o)


def _dataframe_summary(name: str, value: Any) -> Any:
    """FoundationaLLM saves a DataFrame result as CSV in /mnt/data and returns a preview instead."""
    pandas = sys.modules.get("pandas")
    if pandas is None:
        return value
    if isinstance(value, pandas.DataFrame):
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + f"{time.time_ns() // 1000 % 1_000_000:06d}"
        safe = "".join(c for c in name if c.isalnum() or c in "_-") or "df"
        value.to_csv(f"{safe}_{stamp}.csv", index=False)
        preview = value.head(10).reset_index().rename(columns={"index": ""}).to_dict(orient="records")
        return {
            "type": "dataframe",
            "details": "The dataframe has been saved to a CSV file. A preview of the first ten rows of data "
            "has been generated. To view all the data, examine the CSV file that was returned.",
            "preview": preview,
        }
    if isinstance(value, pandas.Series):
        return {"type": "series", "details": "The series data is displayed below.", "data": value.to_dict()}
    return value


def named_results(names: list[str], namespace: dict[str, Any]) -> dict[str, str]:
    results: dict[str, str] = {}
    for name in names:
        if name not in namespace:
            continue
        try:
            encoded = json.dumps(_dataframe_summary(name, namespace[name]), cls=_Encoder)
        except Exception:  # values that cannot be serialised are dropped, as in the original
            continue
        if len(encoded) <= RESULT_VALUE_LIMIT:
            results[name] = _clean(encoded)
    return results


def _user_traceback(error: BaseException) -> str:
    tb = error.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(CELL_PREFIX):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


class Interpreter:
    def __init__(self) -> None:
        module = types.ModuleType("__main__")
        module.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = module
        self.namespace = module.__dict__
        self.count = 0
        self.sink = Capture(0)
        sys.stdout = sys.stderr = self.sink

    def execute(self, code: str, max_output: int, want_names: bool) -> dict[str, Any]:
        self.count += 1
        filename = f"{CELL_PREFIX}{self.count}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        out, err = Capture(max_output), Capture(max_output)
        status, result, error, results = "Succeeded", "", None, {}
        sys.stdout, sys.stderr = out, err
        started = time.perf_counter()
        try:
            tree = ast.parse(code, filename)
            names = last_statement_names(tree) if want_names else []
            tail = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            if tree.body:
                exec(compile(tree, filename, "exec"), self.namespace)
            if tail is not None:
                value = eval(compile(ast.Expression(tail.value), filename, "eval"), self.namespace)
                if value is not None:
                    self.namespace["_"] = value
                    result = _clean(repr(value)[:max_output])
                elif not isinstance(tail.value, ast.Call):
                    result = None  # as the service's examples: `a = None; a` -> null, `print(..)` -> ""
            results = named_results(names, self.namespace) if names else {}
        except SystemExit as exit_:
            if exit_.code not in (None, 0):
                status, error = "Failed", self._failure(exit_, err)
        except BaseException as failure:  # noqa: BLE001 - everything the code raises is its result
            status, error = "Failed", self._failure(failure, err)
        finally:
            elapsed = time.perf_counter() - started
            sys.stdout = sys.stderr = self.sink
        return {
            "status": status,
            "stdout": out.value(),
            "stderr": err.value(),
            "stdout_bytes": out.size_bytes,
            "stderr_bytes": err.size_bytes,
            "result": result,
            "results": results,
            "error": error,
            "time_ms": int(round(elapsed * 1000)),
        }

    @staticmethod
    def _failure(failure: BaseException, err: Capture) -> dict[str, str]:
        text = _clean(_user_traceback(failure))
        err.write(text)
        return {"name": type(failure).__name__, "message": _clean(str(failure))[:2000], "traceback": text[-65536:]}


# --- main loop ---


def _take_protocol_fds() -> tuple[int, int]:
    requests, answers = os.dup(0), os.dup(1)  # os.dup makes non-inheritable descriptors
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    return requests, answers


def serve(config: dict[str, Any]) -> None:
    """Be one session's interpreter: sandbox, then answer requests until the server closes the pipe."""
    requests, answers = _take_protocol_fds()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG instead
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _apply_limits(config.get("limits", {}))
    sandbox = Sandbox(config)
    interpreter = Interpreter()
    write_frame(answers, {"op": "ready", "pid": os.getpid(), "network": sandbox.network,
                          "private_mounts": sandbox.private_mounts})
    while (request := read_frame(requests)) is not None:
        op = request.get("op")
        if op == "exec":
            reply = interpreter.execute(request["code"], int(request["max_output"]), bool(request["named_results"]))
        elif op == "attach":
            try:
                sandbox.attach(request["data_dir"], request["tmp_dir"], request.get("uid"))
                sys.path.insert(0, "")  # as in Jupyter: modules next to the data can be imported
                reply = {"ok": True, "filesystem": sandbox.filesystem, "uid": sandbox.uid}
            except Exception as failure:  # reported, and the executor discards this interpreter
                reply = {"ok": False, "error": f"{type(failure).__name__}: {failure}"}
        else:
            reply = {"ok": op == "ping"}
        write_frame(answers, reply)
    os._exit(0)


# --- the zygote: interpreters forked from one that has started up already ---


def zygote(config: dict[str, Any], control_fd: int) -> None:
    """Fork a session interpreter for each request on ``control_fd`` (a SOCK_SEQPACKET Unix socket).

    A request is one record with the child's two pipe ends attached (requests to read, answers to
    write); the answer is ``{"op": "forked", "pid"}``. Each child that ends is reported as
    ``{"op": "exit", "pid", "code"}`` (a negative code: the signal). Forking an interpreter that has
    imported everything costs ~1 ms against ~35 ms of CPU to start one. The zygote runs no user code
    and exits when the server closes the socket; its children die with it (parent-death signal).
    """
    import resource  # noqa: F401 - imported once here, not in every child
    import select
    import socket

    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        readable = select.select([control, wake_r], [], [])[0]
        if wake_r in readable:
            os.read(wake_r, 4096)
            _report_exits(control)
        if control not in readable:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(control, 4096, 2)
        except OSError:
            message, fds = b"", []
        if not message:
            os._exit(0)
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            control.send(json.dumps({"op": "refused", "error": "two descriptors expected"}).encode())
            continue
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            control.close()
            os.close(wake_r)
            os.close(wake_w)
            os.setsid()  # its own process group, as a directly started interpreter
            os.dup2(fds[0], 0)
            os.dup2(fds[1], 1)
            os.close(fds[0])
            os.close(fds[1])
            try:
                serve(config)
            finally:
                os._exit(1)  # never back into the zygote's loop
        for fd in fds:
            os.close(fd)
        control.send(json.dumps({"op": "forked", "pid": pid}).encode())


def _report_exits(control: Any) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        control.send(json.dumps({"op": "exit", "pid": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


def main() -> None:
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    # Started with -S: the server's site-packages folders, without running their .pth start-up hooks.
    sys.path.extend(folder for folder in config.get("site_packages", []) if folder not in sys.path)
    if len(sys.argv) > 2 and sys.argv[2].startswith("--zygote="):
        zygote(config, int(sys.argv[2].removeprefix("--zygote=")))
    else:
        serve(config)


if __name__ == "__main__":
    main()
