"""One writer per embedding store: an OS lock on a file inside the store folder.

Opening a store for writing takes an exclusive, non-blocking ``flock`` (``msvcrt.locking`` on
Windows) on ``<store>/writer.lock`` and writes who holds it (pid, host, start time) into that file.
The operating system releases the lock when the holder closes it or dies (SIGKILL and power loss
included), so a crashed writer never blocks the store. A second process that asks for the lock
gets a :class:`~napari_conch.errors.StoreError` naming the holder, or waits for it up to ``wait``
seconds. Readers take no lock.

The lock belongs to a process: several
:class:`~napari_conch.engine.store.embedding_store.EmbeddingStore` objects of one process opened
for writing on the same store share it (a reference count), and it is released when the last of
them is closed or garbage collected. A child made by ``fork`` does not inherit it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from napari_conch.errors import StoreError

#: Name of the lock file inside a store folder.
LOCK_NAME = "writer.lock"
#: Seconds between two attempts while waiting for the lock.
POLL_S = 0.2


class StoreBusyError(StoreError):
    """Another process is writing the store (its writer lock is taken)."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a store's lock, as its lock file says."""

    pid: int | None
    host: str | None
    since: str | None

    def describe(self) -> str:
        """``pid 123 on host, since 2026-01-01T10:00:00+0000`` (what is known of it)."""
        if self.pid is None:
            return "another process (no details recorded)"
        where = f" on {self.host}" if self.host else ""
        since = f", since {self.since}" if self.since else ""
        return f"pid {self.pid}{where}{since}"


@dataclass
class _Held:
    file: IO[bytes]
    pid: int
    count: int


_HELD: dict[str, _Held] = {}
_MUTEX = threading.Lock()


def _key(store_path: Path) -> str:
    return os.path.realpath(store_path)


def _try_lock(file: IO[bytes]) -> bool:
    """Take the lock without blocking; False when another holder has it."""
    if sys.platform == "win32":  # pragma: no cover - not tested on this platform
        import msvcrt

        try:
            file.seek(0)
            msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(file: IO[bytes]) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def read_holder(store_path: str | os.PathLike) -> LockHolder:
    """Return what the lock file of a store says about its holder (fields None when unknown)."""
    try:
        data = json.loads((Path(store_path) / LOCK_NAME).read_text() or "{}")
        pid = int(data["pid"]) if "pid" in data else None
        return LockHolder(pid, data.get("host"), data.get("since"))
    except (OSError, ValueError, TypeError, AttributeError):
        return LockHolder(None, None, None)


def _open_lock_file(store_path: Path) -> IO[bytes]:
    path = store_path / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise StoreError(
            f"{store_path}: cannot open the store for writing ({exc.strerror or exc}: {path})"
        ) from exc
    return os.fdopen(fd, "r+b", buffering=0)


def _record_holder(file: IO[bytes]) -> None:
    """Write pid, host and time into the lock file (best effort: the lock is what counts)."""
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        file.seek(0)
        file.truncate(0)
        file.write(json.dumps(info).encode())
    except OSError:
        pass


def acquire(store_path: str | os.PathLike, wait: float | None = None) -> str:
    """Take the writer lock of the store at ``store_path``; return the key to release it with.

    Parameters
    ----------
    store_path
        The store folder (it must exist).
    wait
        Seconds to wait for another holder to finish; ``None`` or 0 fails at once,
        ``float('inf')`` waits as long as it takes.

    Raises
    ------
    StoreBusyError
        When another process holds the lock (naming it), after ``wait`` seconds.
    StoreError
        When the lock file cannot be made or opened (e.g. a read-only folder).
    """
    path = Path(store_path)
    key = _key(path)
    deadline = time.monotonic() + (float(wait) if wait else 0.0)
    file: IO[bytes] | None = None
    while True:
        with _MUTEX:
            held = _HELD.get(key)
            if held is not None and held.pid == os.getpid():
                held.count += 1
                if file is not None:
                    file.close()
                return key
            if file is None:
                file = _open_lock_file(path)
            if _try_lock(file):
                _record_holder(file)
                _HELD[key] = _Held(file, os.getpid(), 1)
                return key
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            file.close()
            holder = read_holder(path).describe()
            waited = f" after waiting {wait:g} s" if wait else ""
            raise StoreBusyError(
                f"{path}: the store is being written by {holder}{waited}; "
                "try again when that run has finished"
            )  # no hint of how to wait: the command line adds its own, napari has none
        time.sleep(min(POLL_S, remaining))


def release(key: str) -> None:
    """Give back one reference to a lock taken with :func:`acquire`; unlock at the last one."""
    with _MUTEX:
        held = _HELD.get(key)
        if held is None or held.pid != os.getpid():
            return
        held.count -= 1
        if held.count > 0:
            return
        del _HELD[key]
        try:
            held.file.seek(0)
            held.file.truncate(0)
        except OSError:
            pass
        try:
            _unlock(held.file)
        finally:
            held.file.close()


def is_held(store_path: str | os.PathLike) -> bool:
    """True when this process holds the writer lock of the store."""
    with _MUTEX:
        held = _HELD.get(_key(Path(store_path)))
        return held is not None and held.pid == os.getpid()
