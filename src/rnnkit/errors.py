"""Exceptions that carry a user-facing message.

Library code raises ``ValueError``/``TypeError`` for bad arguments, as torch does. Problems with
a user's *data or files* (a missing file, malformed lines, an empty corpus, a run directory that
is not a run) raise :class:`InvalidInputError`, a ``ValueError`` whose message is one line naming
what was wrong and how to fix it. The command line prints it as ``error: <message>`` and exits 2.
"""

from __future__ import annotations


class InvalidInputError(ValueError):
    """A user's file, data or option is unusable; the message says what and how to fix it."""
