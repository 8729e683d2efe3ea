"""What tasks share: the cell names they accept and a size check.

The task contract itself (:class:`Task`, :class:`StepOutput`) lives below the training engine,
in :mod:`rnnkit.train.task`, and is re-exported here; the registry of task families and the
run lifecycle are :mod:`rnnkit.runs`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from rnnkit.layers import cell_families
from rnnkit.train.task import StepOutput, Task  # noqa: F401  (re-exported)

# The cell families every task accepts (lstm, gru, rnn, irnn and any registered later): a live
# read-only view of the registry, so ``cell in CELLS`` sees families registered at run time.
CELLS = cell_families()


def check_layer_options(options: dict) -> None:
    """Raise ValueError naming a numeric layer option that is not a finite number
    (``--forget-bias nan`` would turn every loss into NaN at the first step)."""
    if not isinstance(options, dict):
        raise ValueError(f"layer_options must be an object of layer options, got {options!r}")
    for name, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")


def check_field_types(config) -> None:
    """Raise ValueError naming the first field of a dataclass ``config`` whose value is not of
    its annotated type (``str``, ``int``, ``float``, ``bool``, ``dict``, ``list``/``tuple``,
    ``X | None``). A run's ``config.json`` is read back into these configs, so a crafted or
    damaged file is refused here instead of failing deep inside the task."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        expected = hints.get(f.name)
        value = getattr(config, f.name)
        if expected is not None and not _is_instance(value, expected):
            raise ValueError(f"{f.name} must be {_type_name(expected)}, got {value!r}")


def _is_instance(value, expected) -> bool:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, t) for t in typing.get_args(expected))
    if origin is not None:
        expected = origin  # list[str] -> list: the container is checked, not its items
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected in (list, tuple):
        return isinstance(value, list | tuple)  # JSON has no tuples
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True  # Any, Literal, …: not checked here


def _type_name(expected) -> str:
    args = typing.get_args(expected) if typing.get_origin(expected) else ()
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in args)
    if expected is type(None):
        return "null"
    origin = typing.get_origin(expected) or expected
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        dict: "an object",
        list: "a list",
        tuple: "a list",
    }.get(origin, str(expected))


def check_positive_ints(**values: Any) -> None:
    """Raise ValueError naming the first argument that is not an int >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
