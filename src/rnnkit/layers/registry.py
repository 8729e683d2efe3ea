"""Cell families by name: the one table that ``make_layer``, tasks and the CLI read.

A family is a name (``"lstm"``) and a layer class (:class:`rnnkit.LSTM`). The layer class says
which keyword options belong to its family in ``family_options`` (LSTM: ``peephole``,
``coupled``, ``layer_norm``, ``proj_size``, ``forget_bias``), so a caller can tell a user which
cell an option applies to. The table is live: a family registered at run time is seen by every
later call of :func:`cell_families` or :func:`cell_family` (and by parsers built afterwards).

Example::

    >>> import rnnkit
    >>> from rnnkit.layers import cell_family, cell_families
    >>> {"lstm", "gru", "rnn", "irnn"} <= set(cell_families())
    True
    >>> cell_family("gru").family_options
    ('reset_after',)
    >>> [name for name, layer in cell_families().items() if "peephole" in layer.family_options]
    ['lstm']
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# name -> layer class; filled by rnnkit.layers.recurrent for the built-in families.
CELL_LAYERS: dict[str, type] = {}


def register_cell_family(name: str, layer_cls: type) -> type:
    """Make ``layer_cls`` (a :class:`~rnnkit.layers.RecurrentLayer` subclass) the family ``name``.

    Registering the same class again under its name is a no-op; another class under a taken name
    is an error. Returns ``layer_cls``, so it can decorate the class.

    Raises:
        ValueError: ``name`` is not a non-empty lowercase word, or is taken by another class.
        TypeError: ``layer_cls`` is not a RecurrentLayer subclass, or its ``family_options``
            is not a tuple of option names.
    """
    from rnnkit.layers.recurrent import RecurrentLayer

    if not isinstance(name, str) or not name or name != name.strip().lower() or ":" in name:
        raise ValueError(
            f"a cell family name must be a non-empty lowercase word without ':', got {name!r}"
        )
    if not (isinstance(layer_cls, type) and issubclass(layer_cls, RecurrentLayer)):
        raise TypeError(f"cell family {name!r} needs a RecurrentLayer subclass, got {layer_cls!r}")
    options = layer_cls.family_options
    if not isinstance(options, tuple) or not all(isinstance(o, str) for o in options):
        raise TypeError(
            f"{layer_cls.__name__}.family_options must be a tuple of option names, got {options!r}"
        )
    current = CELL_LAYERS.get(name)
    if current is not None and current is not layer_cls:
        raise ValueError(
            f"cell family {name!r} is already registered to {current.__name__}; choose another name"
        )
    CELL_LAYERS[name] = layer_cls
    return layer_cls


def cell_families() -> Mapping[str, type]:
    """A read-only live view: family name -> layer class, in registration order."""
    return MappingProxyType(CELL_LAYERS)


def cell_family(name: str) -> type:
    """The layer class of family ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    if name not in CELL_LAYERS:
        raise ValueError(f"cell must be one of {', '.join(CELL_LAYERS)}; got {name!r}")
    return CELL_LAYERS[name]
