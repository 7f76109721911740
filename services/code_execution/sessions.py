"""Sessions by identifier: a folder, a uid and (while it lives) an interpreter each, with a limit and
an idle cooldown that every call resets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from telemetry.context import hashed

if TYPE_CHECKING:
    from services.code_execution.executor import ExecutionRecord
    from services.code_execution.process import WorkerProcess


class SessionLimitError(Exception):
    """No more sessions: the pool's max-sessions is reached (Dynamic Sessions answers 404)."""


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(eq=False)
class Session:
    identifier: str
    folder: Path  # <sessions_dir>/<sha256 of the identifier>; root-owned, 0711
    uid: int | None
    cooldown_s: float
    created_at: float = field(default_factory=time.time)
    last_access: float = field(default_factory=time.time)
    etag: str = field(default_factory=lambda: uuid.uuid4().hex)
    worker: WorkerProcess | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    busy: int = 0
    executions: OrderedDict[str, ExecutionRecord] = field(default_factory=OrderedDict)
    closed: bool = False

    @property
    def id_hash(self) -> str:
        return hashed(self.identifier)

    @property
    def data_dir(self) -> Path:
        """What the code sees as /mnt/data."""
        return self.folder / "data"

    @property
    def tmp_dir(self) -> Path:
        """What the code sees as /tmp."""
        return self.folder / "tmp"

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
    def __init__(self, root: Path, max_sessions: int, cooldown_s: float, uids: range | None) -> None:
        self.root = root
        self.max_sessions = max_sessions
        self.cooldown_s = cooldown_s
        self._uids = uids
        self._free_uids: list[int] = list(reversed(uids)) if uids is not None else []
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def prepare(self) -> None:
        """Start clean: folders of a previous run belong to sessions that no longer exist."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)

    def get(self, identifier: str) -> Session | None:
        session = self._sessions.get(identifier)
        if session is not None:
            session.touch()
        return session

    def open(self, identifier: str) -> tuple[Session, bool]:
        """The session for ``identifier``, allocated on first use; touches it (resets the cooldown)."""
        session = self.get(identifier)
        if session is not None:
            return session, False
        if len(self._sessions) >= self.max_sessions or (self._uids is not None and not self._free_uids):
            raise SessionLimitError(f"The session pool has no more sessions (max-sessions is {self.max_sessions}).")
        uid = self._free_uids.pop() if self._uids is not None else None
        folder = self.root / hashlib.sha256(identifier.encode()).hexdigest()[:40]
        session = Session(identifier, folder, uid, self.cooldown_s)
        self._make_folders(session)
        self._sessions[identifier] = session
        return session, True

    def _make_folders(self, session: Session) -> None:
        session.folder.mkdir(mode=0o711, exist_ok=True)
        for path in (session.data_dir, session.tmp_dir):
            path.mkdir(mode=0o700, exist_ok=True)
            if session.uid is not None:
                os.chown(path, session.uid, session.uid)

    def remove(self, session: Session) -> bool:
        """Forget a live session and move its folder aside at once (a new session of the same identifier
        gets a fresh folder); the caller then closes its interpreter and calls ``delete_folder``.
        False when the session was already removed (nothing more to do)."""
        if self._sessions.get(session.identifier) is not session:
            return False
        del self._sessions[session.identifier]
        session.closed = True
        retired = self.root / f".retired-{uuid.uuid4().hex}"
        with contextlib.suppress(OSError):
            session.folder.rename(retired)
            session.folder = retired
        return True

    @staticmethod
    def delete_folder(session: Session) -> None:
        """Delete the session's folder (blocking: run it in a thread)."""
        shutil.rmtree(session.folder, ignore_errors=True)

    def release_uid(self, session: Session) -> None:
        if session.uid is not None and self._uids is not None:
            self._free_uids.insert(0, session.uid)  # reuse a uid as late as possible

    def expired(self) -> list[Session]:
        now = time.time()
        return [session for session in self._sessions.values() if session.expired(now)]

    def all(self) -> list[Session]:
        return list(self._sessions.values())
