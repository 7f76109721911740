"""Sessions by identifier, with a limit and an idle cooldown that every call resets.

Each session owns a ``Slot``: its folder (``data`` is what code sees as /mnt/data: a size-limited tmpfs
when the server is root), its uid and its cgroup. The warm pool prepares slots with a sandbox already
started in them; a new session takes one whole, so it pays nothing to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from services.code_execution import storage
from services.code_execution.cgroups import CgroupLimits, CgroupRoot, SessionCgroup
from telemetry.context import hashed

if TYPE_CHECKING:
    from services.code_execution.models import ExecutionRecord
    from services.code_execution.process import WorkerProcess


class SessionLimitError(Exception):
    """No more sessions: the pool's max-sessions is reached (Dynamic Sessions answers 404)."""


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(eq=False)
class Slot:
    """Where one session's sandbox lives: folder, uid and cgroup, prepared before a session needs it."""

    folder: Path  # <sessions_dir>/slot-<random>; root-owned, 0711
    uid: int | None
    cgroup: SessionCgroup | None
    quota: bool  # data is a size-limited tmpfs

    @property
    def data_dir(self) -> Path:
        """What the code sees as /mnt/data."""
        return self.folder / "data"


@dataclass(eq=False)
class Session:
    identifier: str
    slot: Slot
    cooldown_s: float
    created_at: float = field(default_factory=time.time)
    last_access: float = field(default_factory=time.time)
    etag: str = field(default_factory=lambda: uuid.uuid4().hex)
    worker: WorkerProcess | None = None
    worker_origin: str = "cold"  # how the current interpreter was had: warm (the pool's) | cold
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    busy: int = 0
    executions: OrderedDict[str, ExecutionRecord] = field(default_factory=OrderedDict)
    closed: bool = False

    @property
    def id_hash(self) -> str:
        return hashed(self.identifier)

    @property
    def folder(self) -> Path:
        return self.slot.folder

    @property
    def uid(self) -> int | None:
        return self.slot.uid

    @property
    def data_dir(self) -> Path:
        return self.slot.data_dir

    def touch(self) -> None:
        self.last_access = time.time()

    def expired(self, now: float) -> bool:
        return self.busy == 0 and not self.lock.locked() and now - self.last_access >= self.cooldown_s

    def info(self) -> dict[str, str]:
        """The Dynamic Sessions ``Session`` resource."""
        return {
            "identifier": self.identifier,
            "createdAt": _iso(_utc(self.created_at)),
            "lastAccessedAt": _iso(_utc(self.last_access)),
            "expireAt": _iso(_utc(self.last_access) + timedelta(seconds=self.cooldown_s)),
            "etag": f'"{self.etag}"',
        }


class SessionManager:
    def __init__(self, root: Path, max_sessions: int, cooldown_s: float, uids: range | None,
                 limits: CgroupLimits, disk_bytes: int) -> None:
        self.root = root
        self.max_sessions = max_sessions
        self.cooldown_s = cooldown_s
        self.limits = limits
        self.disk_bytes = disk_bytes
        self.cgroups: CgroupRoot | None = None
        self.quota = False  # set by the executor once it knows mounts work
        self._uids = uids
        self._free_uids: list[int] = list(reversed(uids)) if uids is not None else []
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def has_uids(self) -> bool:
        return self._uids is not None

    def prepare(self) -> None:
        """Start clean: folders (and their mounts) of a previous run belong to sessions that no longer exist."""
        if self.root.exists():
            self.unmount_all()
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)

    def unmount_all(self) -> None:
        for mount in _mounts_under(self.root):
            storage.unmount(mount)

    def get(self, identifier: str) -> Session | None:
        session = self._sessions.get(identifier)
        if session is not None:
            session.touch()
        return session

    def check_room(self) -> None:
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitError(f"The session pool has no more sessions (max-sessions is {self.max_sessions}).")

    def open(self, identifier: str, slot: Slot | None = None) -> tuple[Session, bool]:
        """The session for ``identifier``, allocated on first use (in ``slot``, or a new one); touches it."""
        session = self.get(identifier)
        if session is not None:
            return session, False
        self.check_room()
        session = Session(identifier, slot or self.new_slot(), self.cooldown_s)
        self._sessions[identifier] = session
        return session, True

    def new_slot(self) -> Slot:
        """A folder, a uid and a cgroup for one session to come; raises SessionLimitError without uids."""
        if self._uids is not None and not self._free_uids:
            raise SessionLimitError("The session pool has no more session uids.")
        uid = self._free_uids.pop() if self._uids is not None else None
        folder = self.root / f"slot-{uuid.uuid4().hex}"
        slot = Slot(folder, uid, None, False)
        try:
            folder.mkdir(mode=0o711)
            slot.data_dir.mkdir(mode=0o700)
            slot.quota = self.quota and storage.mount_quota(str(slot.data_dir), self.disk_bytes, uid) is None
            if uid is not None:
                os.chown(slot.data_dir, uid, uid)
            if self.cgroups is not None:
                slot.cgroup = self.cgroups.create(folder.name, self.limits)
        except BaseException:
            self.release_slot(slot)
            raise
        return slot

    def release_slot(self, slot: Slot) -> None:
        """Kill what is left in the slot's cgroup, remove it, its tmpfs and its folder (blocking: a thread)."""
        if slot.cgroup is not None:
            slot.cgroup.remove()
        if storage.is_mount(str(slot.data_dir)):
            storage.unmount(str(slot.data_dir))
        shutil.rmtree(slot.folder, ignore_errors=True)
        if slot.uid is not None and self._uids is not None:
            self._free_uids.insert(0, slot.uid)  # reuse a uid as late as possible
            slot.uid = None

    def remove(self, session: Session) -> bool:
        """Forget a live session (its identifier is free again at once); the caller then closes its
        interpreter and releases its slot. False when the session was already removed."""
        if self._sessions.get(session.identifier) is not session:
            return False
        del self._sessions[session.identifier]
        session.closed = True
        return True

    def expired(self) -> list[Session]:
        now = time.time()
        return [session for session in self._sessions.values() if session.expired(now)]

    def all(self) -> list[Session]:
        return list(self._sessions.values())


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    with contextlib.suppress(OSError), open("/proc/self/mounts") as mounts:
        found = [line.split()[1] for line in mounts]
        return sorted((path for path in found if path.startswith(prefix)), key=len, reverse=True)
    return []
