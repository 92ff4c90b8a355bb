"""Errors that reach the user.

Every mistake a user can make (a missing file, a checkpoint of another architecture, a store that
does not match) raises a subclass of :class:`NapariConchError` whose message is one line naming
the file or value and what is wrong. The CLI prints that line; the napari widgets show it as a
notification. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NapariConchError(Exception):
    """A user-facing error with a one-line message."""


class CheckpointError(NapariConchError):
    """A checkpoint cannot be found, read, or does not fit the model architecture."""


class TokenizerNotFoundError(NapariConchError):
    """No tokenizer file was found where we looked."""


class ConfigError(NapariConchError):
    """A model configuration is unknown or malformed."""


class InputError(NapariConchError):
    """Image or tile data that cannot be used as model input."""


class SlideError(NapariConchError):
    """A slide cannot be opened or read."""


class SlideRefusedError(SlideError):
    """A file refused before its pixels are read: not a regular file (a FIFO, a device), or a
    size no slide has (no pixels, or more than ``slide.base.MAX_SLIDE_SIDE`` a side)."""


class StoreError(NapariConchError):
    """An embedding store is missing, damaged or does not match what is asked."""


class NoDecoderError(NapariConchError):
    """Captioning was asked of a model whose decoder weights were never loaded."""


class OutputError(NapariConchError):
    """A result file or folder cannot be written (read-only, full disk, wrong kind of path)."""


class ClusterError(NapariConchError):
    """A dask.distributed cluster cannot be reached, was lost, or has no workers."""


def describe_os_error(exc: OSError) -> str:
    """An ``OSError`` as one short phrase naming the file: ``"/a/b: No space left on device"``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason
