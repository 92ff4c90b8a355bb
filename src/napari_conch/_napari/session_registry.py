"""One :class:`~napari_conch.engine.session.session.Session` per napari viewer.

Every napari-conch dock of a viewer asks :func:`session_for` for the viewer's session and
subscribes to it; no dock reads another. The session is forgotten when the viewer is.
"""

from __future__ import annotations

import weakref
from typing import Any

from napari_conch.engine.session.session import Session

_SESSIONS: dict[int, Session] = {}


def unwrap(obj: Any) -> Any:
    """The object behind napari's ``PublicOnlyProxy`` (which wraps ``napari*`` objects)."""
    return getattr(obj, "__wrapped__", obj)


def session_for(viewer: Any) -> Session:
    """The session of ``viewer``, made on first use."""
    viewer = unwrap(viewer)
    key = id(viewer)
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = Session()
        weakref.finalize(viewer, _SESSIONS.pop, key, None)
    return session
