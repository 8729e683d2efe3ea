"""Files a read-only command writes where the user says (``--out``, ``--plot``, ``--heatmap``).

Such a command never writes into a run directory unless told to, refuses to replace an existing
file without ``--force``, and turns a failed write (a full disk, a read-only folder) into one
``error:`` line with the old file left as it was (every write is a temporary file + rename).

Example::

    >>> check_new_file("--plot", None, force=False)  # nothing asked for: nothing to check
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from rnnkit.errors import InvalidInputError

_HINTS = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EACCES: "write to a folder you may write to",
    errno.EPERM: "write to a folder you may write to",
    errno.EROFS: "write to a folder on a writable file system",
}


def check_new_file(flag: str, value: str | os.PathLike | None, *, force: bool) -> Path | None:
    """``value`` as a path that may be written: not a directory, not an existing file unless
    ``force``. Checked before any work, so a refusal costs nothing."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise InvalidInputError(f"{flag} {path} is a directory; give a file name")
    if path.exists() and not force:
        raise InvalidInputError(f"{flag} {path} exists; pass --force to replace it")
    return path


@contextlib.contextmanager
def writing(path: str | os.PathLike):
    """Report an ``OSError`` raised while writing ``path`` as one user-facing error."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _HINTS and not isinstance(exc, PermissionError):
            raise
        hint = _HINTS.get(exc.errno, "write to a folder you may write to")
        reason = exc.strerror or str(exc)
        raise InvalidInputError(
            f"cannot write {path} ({reason}); {hint} — any earlier file there is unchanged"
        ) from None
