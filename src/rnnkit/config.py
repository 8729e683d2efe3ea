"""Validated dataclass configs: one pattern for every task's data and model options.

A config is a ``@dataclass`` that subclasses :class:`Config`. It validates itself in
``__post_init__`` (raise ValueError naming the field), is saved in ``config.json`` with
:meth:`Config.to_dict` and read back with :meth:`Config.from_dict`, which rejects unknown keys
with the list of known ones. A field's ``metadata`` carries what the command line needs to
generate its flag (:func:`rnnkit.cli.options.add_config_flags`): ``help`` and optionally
``metavar``, ``choices`` or ``flag=False`` (a field with no command-line flag)::

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Batching(Config):
    ...     batch_size: int = field(default=32, metadata={"help": "examples per batch"})
    >>> Batching.from_dict({"batch_size": 8})
    Batching(batch_size=8)
    >>> Batching.from_dict({"batchsize": 8})
    Traceback (most recent call last):
    ...
    ValueError: unknown option(s) batchsize; known: batch_size
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C", bound="Config")


class Config:
    """Base of dataclass configs: ``to_dict``, ``from_dict`` (unknown keys are errors)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls: type[C], data: dict, *, strict: bool = True) -> C:
        """Build from a dict. ``strict=False`` ignores keys that are not fields (a run's
        ``config.json`` records facts about the data beside the options)."""
        if not isinstance(data, dict):
            raise ValueError(
                f"expected a JSON object for {cls.__name__}, got {type(data).__name__}"
            )
        names = cls.field_names()
        unknown = sorted(set(data) - set(names))
        if unknown and strict:
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self: C, **changes) -> C:
        return dataclasses.replace(self, **changes)
