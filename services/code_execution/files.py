"""A session's files (its /mnt/data), reached only through descriptors opened with O_NOFOLLOW.

The server is more privileged than the code that writes these folders, so nothing here follows a
symbolic link or opens anything but regular files and directories: code cannot plant a link that
makes the file API read or delete outside its own session.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MNT_DATA = "/mnt/data"
UPLOAD_PREFIX = ".upload-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class InvalidPathError(ValueError):
    """A name or path that is not a plain name inside the session (traversal, separators, ...)."""

    def __init__(self, message: str, target: str) -> None:
        super().__init__(message)
        self.target = target


class FileMissingError(LookupError):
    pass


@dataclass(frozen=True)
class FileEntry:
    name: str
    is_dir: bool
    size: int
    mtime_ns: int
    directory: str  # the parent folder relative to /mnt/data ("" for the root)

    @property
    def type(self) -> str:
        return "directory" if self.is_dir else "file"

    @property
    def content_type(self) -> str:
        if self.is_dir:
            return "application/octet-stream"
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"

    @property
    def last_modified(self) -> str:
        moment = datetime.fromtimestamp(self.mtime_ns / 1e9, UTC)
        return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def check_name(name: str, target: str = "name") -> str:
    if (
        not name
        or name in {".", ".."}
        or len(name.encode()) > 255
        or any(c in name for c in "/\\\0")
        or name.startswith(UPLOAD_PREFIX)
    ):
        raise InvalidPathError(f"'{name[:100]}' is not a valid file name.", target)
    return name


def split_directory(path: str | None, target: str = "path") -> list[str]:
    """``None``, ``""``, ``"/"`` and ``"/mnt/data"`` are the root; other paths are relative to it."""
    text = (path or "").strip()
    if text == MNT_DATA or text.startswith(MNT_DATA + "/"):
        text = text[len(MNT_DATA) :]
    if "\\" in text or "\0" in text:
        raise InvalidPathError(f"'{text[:100]}' is not a valid path.", target)
    return [check_name(part, target) for part in text.split("/") if part]


def split_file(path: str | None, name: str, target: str = "name") -> tuple[list[str], str]:
    """A directory (the ``path`` parameter) and a name that may itself be a relative path."""
    parts = split_directory(path, "path") + split_directory(name, target)
    if not parts:
        raise InvalidPathError("A file name is required.", target)
    return parts[:-1], parts[-1]


class SessionFiles:
    def __init__(self, root: Path, uid: int | None) -> None:
        self.root = root
        self.uid = uid

    @contextlib.contextmanager
    def _directory(self, parts: list[str], create: bool = False) -> Iterator[int]:
        try:
            fd = os.open(self.root, _DIR_FLAGS)
        except OSError as error:
            raise FileMissingError("/") from error
        try:
            for part in parts:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                        self._own(part, fd)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as error:  # missing, not a directory, or a link (ELOOP)
                    raise FileMissingError("/".join(parts)) from error
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _own(self, name: str, dir_fd: int) -> None:
        if self.uid is not None:
            os.chown(name, self.uid, self.uid, dir_fd=dir_fd, follow_symlinks=False)

    @staticmethod
    def _entry(name: str, info: os.stat_result, directory: list[str]) -> FileEntry | None:
        if name.startswith(UPLOAD_PREFIX) or not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            return None  # links, fifos, sockets and unfinished uploads are not files of the API
        return FileEntry(name, stat.S_ISDIR(info.st_mode), info.st_size, info.st_mtime_ns, "/".join(directory))

    def list(self, directory: list[str], recursive: bool = False) -> list[FileEntry]:
        with self._directory(directory) as fd:
            return self._list(fd, directory, recursive)

    def _list(self, fd: int, directory: list[str], recursive: bool) -> list[FileEntry]:
        entries: list[FileEntry] = []
        for name in sorted(os.listdir(fd)):
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            entry = self._entry(name, info, directory)
            if entry is None:
                continue
            entries.append(entry)
            if recursive and entry.is_dir:
                with contextlib.suppress(FileMissingError), _subdir(fd, name) as sub:
                    entries.extend(self._list(sub, [*directory, name], recursive))
        return entries

    def walk_files(self) -> list[FileEntry]:
        """Every regular file below the root (the custom container's flat listing)."""
        return [entry for entry in self.list([], recursive=True) if not entry.is_dir]

    def stat(self, directory: list[str], name: str) -> FileEntry:
        with self._directory(directory) as fd:
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError) as error:
                raise FileMissingError(name) from error
        entry = self._entry(name, info, directory)
        if entry is None:
            raise FileMissingError(name)
        return entry

    def open_file(self, directory: list[str], name: str) -> tuple[int, FileEntry]:
        """A read descriptor of a regular file (never a link or a fifo) and its entry."""
        with self._directory(directory) as dir_fd:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError as error:
                raise FileMissingError(name) from error
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise FileMissingError(name)
        return fd, FileEntry(name, False, info.st_size, info.st_mtime_ns, "/".join(directory))

    def read_bytes(self, directory: list[str], name: str) -> tuple[bytes, FileEntry]:
        fd, entry = self.open_file(directory, name)
        with os.fdopen(fd, "rb") as handle:
            return handle.read(), entry

    def delete(self, directory: list[str], name: str) -> None:
        """Delete a file, or a directory with everything in it."""
        with self._directory(directory) as fd:
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError) as error:
                raise FileMissingError(name) from error
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(name, dir_fd=fd)  # fd-based and symlink-safe on Linux
            else:
                os.unlink(name, dir_fd=fd)

    def clear(self) -> None:
        """Delete everything in /mnt/data but the folder itself (it is mounted in the interpreter)."""
        with self._directory([]) as fd:
            for name in os.listdir(fd):
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    shutil.rmtree(name, dir_fd=fd)
                else:
                    os.unlink(name, dir_fd=fd)

    def begin_upload(self, directory: list[str], name: str) -> Upload:
        with self._directory(directory, create=True) as fd:
            temp = f"{UPLOAD_PREFIX}{uuid.uuid4().hex}"
            file_fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                              dir_fd=fd)
            self._own(temp, fd)
            return Upload(self, directory, name, temp, file_fd)


@contextlib.contextmanager
def _subdir(dir_fd: int, name: str) -> Iterator[int]:
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        raise FileMissingError(name) from error
    try:
        yield fd
    finally:
        os.close(fd)


class Upload:
    """A file being received: written under a temporary name, renamed into place when complete."""

    def __init__(self, files: SessionFiles, directory: list[str], name: str, temp: str, fd: int) -> None:
        self._files, self.directory, self.name, self._temp, self._fd = files, directory, name, temp, fd
        self.size = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self.size += len(data)

    def commit(self) -> FileEntry:
        os.close(self._fd)
        self._fd = -1
        with self._files._directory(self.directory) as fd:
            try:
                os.rename(self._temp, self.name, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a link, never follows
            except OSError as error:
                os.unlink(self._temp, dir_fd=fd)
                raise InvalidPathError(f"'{self.name}' cannot be written: {error.strerror}.", "file") from error
        return self._files.stat(self.directory, self.name)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError, FileMissingError), self._files._directory(self.directory) as fd:
            os.unlink(self._temp, dir_fd=fd)
