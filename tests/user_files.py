"""Keep the test suite away from the user's own files.

:func:`isolate` (called by ``tests/conftest.py`` when pytest loads it, before any test module or
napari's settings are imported) points everything the suite could write in the user's home at
one temporary folder: napari-conch's store cache (``NAPARI_CONCH_CACHE``), napari's settings file
(``NAPARI_CONFIG``), and the XDG cache, config, data and state folders (napari's theme cache, Qt's
and Mesa's shader caches, fontconfig, matplotlib). Subprocesses inherit the same environment.

:class:`FolderGuard` then watches the user's real napari-conch cache folder
(``platformdirs.user_cache_dir("napari-conch", appauthor=False)``, taken before the redirection):
a Python audit hook (:func:`sys.addaudithook`) sees every file operation of the test process, so
any open, listing, creation, renaming or removal of a path inside that folder is recorded with
the test that did it, and the session fails at its end (``tests/conftest.py``). It watches this
process's own operations only, so a napari-conch run by the user (or another developer on the
machine) writing the same folder during the suite does not fail it, as a before/after listing of
the folder would.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: Audited events that touch files, and how many of their first arguments are paths.
PATH_EVENTS: dict[str, int] = {
    "open": 1,
    "os.listdir": 1,
    "os.scandir": 1,
    "os.mkdir": 1,
    "os.rename": 2,
    "os.remove": 1,
    "os.rmdir": 1,
    "os.truncate": 1,
    "os.chmod": 1,
    "os.chown": 1,
    "os.utime": 1,
    "os.link": 2,
    "os.symlink": 2,
    "shutil.copyfile": 2,
    "shutil.copymode": 2,
    "shutil.copystat": 2,
    "shutil.copytree": 2,
    "shutil.move": 2,
    "shutil.rmtree": 1,
}

#: Environment variables :func:`isolate` sets, and the folder (under its root) each names.
REDIRECTED = {
    "NAPARI_CONCH_CACHE": "napari-conch-cache",
    "NAPARI_CONFIG": "napari/settings.yaml",
    "XDG_CACHE_HOME": "cache",
    "XDG_CONFIG_HOME": "config",
    "XDG_DATA_HOME": "data",
    "XDG_STATE_HOME": "state",
}


def user_cache_folder() -> Path:
    """The user's napari-conch cache folder as platformdirs gives it in this environment."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-conch", appauthor=False))


def isolate(prefix: str = "napari-conch-tests-") -> Path:
    """Point the user-file environment variables (:data:`REDIRECTED`) at a new temporary folder.

    Returns that folder. Any value they had (a developer's own ``NAPARI_CONCH_CACHE`` included)
    is replaced for this process and its children.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    for name, relative in REDIRECTED.items():
        os.environ[name] = str(root / relative)
    return root


@dataclass(eq=False)
class FolderGuard:
    """Records the file operations of this process on paths inside ``folder``.

    :meth:`start` adds it to the audit hook's watch list (the hook is installed once; audit hooks
    cannot be removed), :meth:`stop` takes it off.
    """

    folder: Path
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    limit: int = 50

    def __post_init__(self) -> None:
        self.folder = Path(os.path.abspath(self.folder))
        self._prefixes = {str(self.folder), os.path.realpath(self.folder)}

    def inside(self, path: str) -> bool:
        """Whether ``path`` (absolute) is the folder or lies under it."""
        return any(path == p or path.startswith(p + os.sep) for p in self._prefixes)

    def see(self, event: str, args: tuple) -> None:
        """Record ``event`` when one of its path arguments lies in the folder."""
        for arg in args[: PATH_EVENTS[event]]:
            if isinstance(arg, int | type(None)) or len(self.seen) >= self.limit:
                continue
            try:
                path = os.path.abspath(os.fsdecode(os.fspath(arg)))
            except TypeError:
                continue
            if self.inside(path):
                test = os.environ.get("PYTEST_CURRENT_TEST", "(outside a test)")
                self.seen.append((event, path, test))

    def start(self) -> FolderGuard:
        _install()
        _GUARDS.append(self)
        return self

    def stop(self) -> None:
        if self in _GUARDS:
            _GUARDS.remove(self)

    def report(self) -> list[str]:
        """One line per recorded operation."""
        return [f"{event} {path}  [{test}]" for event, path, test in self.seen]


_GUARDS: list[FolderGuard] = []
_INSTALLED: list[bool] = []


def _hook(event: str, args: tuple) -> None:
    if _GUARDS and event in PATH_EVENTS:
        try:
            for guard in _GUARDS:
                guard.see(event, args)
        except Exception:  # an audit hook that raises would fail the operation itself
            pass


def _install() -> None:
    if not _INSTALLED:
        sys.addaudithook(_hook)
        _INSTALLED.append(True)
