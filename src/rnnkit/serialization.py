"""Whole-model saving as users do it: ``torch.save(model)``, ``pickle``, ``copy.deepcopy``.

Every rnnkit layer and cell pickles by class, so a model holding them saves whole. Loading such a
file with ``torch.load``'s default ``weights_only=True`` unpickles only globals on an allow-list;
:func:`safe_globals` is rnnkit's part of it (the layer class of every registered cell family,
every cell class and recurrent state of :mod:`rnnkit.cells`). Add the classes of your own model
(``torch.nn.Embedding``, ``torch.nn.Linear``, your ``nn.Module`` …), and the cell class of a
family you registered yourself. rnnkit's own runs never pickle: they save weights as
safetensors (:mod:`rnnkit.io`).

Example::

    >>> import io
    >>> buffer = io.BytesIO()
    >>> torch.save(rnnkit.LSTM(4, 8, peephole=True), buffer)
    >>> _ = buffer.seek(0)
    >>> with torch.serialization.safe_globals(rnnkit.safe_globals()):
    ...     layer = torch.load(buffer)  # weights_only=True, torch's default
    >>> type(layer).__name__, layer.cell.peephole
    ('LSTM', True)
"""

from __future__ import annotations


def safe_globals() -> list[type]:
    """rnnkit's classes that a pickled model or state may hold, for
    ``torch.serialization.safe_globals`` / ``add_safe_globals``: registered layer classes,
    cells and states, sorted by qualified name."""
    from rnnkit import cells
    from rnnkit.layers import cell_families

    found = set(cell_families().values())
    for name in cells.__all__:
        obj = getattr(cells, name)
        if isinstance(obj, type) and obj is not cells.RecurrentCell:
            found.add(obj)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")
