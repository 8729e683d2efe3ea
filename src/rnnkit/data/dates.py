"""Human-written dates in eight locales paired with their ISO 8601 form: a seq2seq demo corpus.

Each pair is ``(source, target)``: a date written the way a locale writes it, taken from the
locale's CLDR date formats through ``babel``, and the same date as ``YYYY-MM-DD``::

    7 de março de 2023      2023-03-07
    Tuesday, March 7, 2023  2023-03-07
    07.03.2023              2023-03-07

A format is used only if every date it writes has one reading:

- the year has four digits (``y``, never ``yy``): ``3/7/23`` could be 1923 or 2023;
- a format whose month is a number writes the day or the year first, never the month first, so
  ``07/03/2023`` always means 7 March across the whole corpus (mixing ``d/M`` with ``M/d`` would
  give the same string two targets).

:func:`ambiguous_sources` checks the resulting map from sources to targets directly, and the
tests run it over whole years. Sources are distinct within one call of :func:`generate_dates`,
so a held-out split never repeats a training source.

Example::

    >>> pairs = generate_dates(3, seed=0)
    >>> len(pairs), all(len(target) == 10 for _, target in pairs)
    (3, True)
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Iterable, Sequence
from functools import cache

from rnnkit.errors import InvalidInputError

# Eight locales: day-first, month-first and year-first orders; Latin and Japanese scripts.
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR", "ja_JP")
FORMAT_LENGTHS = ("short", "medium", "long", "full")
FIRST_DATE = dt.date(1950, 1, 1)
LAST_DATE = dt.date(2049, 12, 31)

_QUOTED = re.compile(r"'[^']*'")


def _fields(pattern: str) -> list[str]:
    """The pattern's date fields in order (``['d', 'MM', 'y']``); quoted literals removed."""
    bare = _QUOTED.sub("", pattern)
    return [m.group(0) for m in re.finditer(r"([A-Za-z])\1*", bare)]


def is_unambiguous(pattern: str) -> bool:
    """True if ``pattern`` (a CLDR date pattern) writes every date in exactly one reading.

    Rejected: two-digit years (``yy``) and numeric months (``M``/``MM``) placed before the day
    (``M/d/y``), which clash with day-first numeric formats.

    >>> is_unambiguous("dd.MM.y"), is_unambiguous("M/d/yy"), is_unambiguous("MMM d, y")
    (True, False, True)
    """
    fields = _fields(pattern)
    years = [f for f in fields if f[0] in "yY"]
    if len(years) != 1 or len(years[0]) == 2:
        return False
    months = [i for i, f in enumerate(fields) if f[0] in "ML"]
    days = [i for i, f in enumerate(fields) if f[0] == "d"]
    if len(months) != 1 or len(days) != 1:
        return False
    month = fields[months[0]]
    numeric_month = len(month) <= 2
    year_first = fields.index(years[0]) < months[0]
    return not (numeric_month and months[0] < days[0] and not year_first)


@cache
def date_formats(locales: tuple[str, ...] = LOCALES) -> tuple[tuple[str, str], ...]:
    """``(locale, pattern)`` for every unambiguous CLDR date format of ``locales``, deduplicated."""
    from babel.dates import get_date_format

    formats = []
    for locale in locales:
        seen = set()
        for length in FORMAT_LENGTHS:
            pattern = get_date_format(length, locale=locale).pattern
            if pattern not in seen and is_unambiguous(pattern):
                seen.add(pattern)
                formats.append((locale, pattern))
    return tuple(formats)


def format_pair(date: dt.date, locale: str, pattern: str) -> tuple[str, str]:
    """``(date in the locale's pattern, ISO 8601 date)``."""
    from babel.dates import format_date

    return format_date(date, pattern, locale=locale), date.isoformat()


def generate_dates(
    n: int,
    seed: int = 0,
    *,
    locales: Sequence[str] = LOCALES,
    first: dt.date = FIRST_DATE,
    last: dt.date = LAST_DATE,
) -> list[tuple[str, str]]:
    """``n`` distinct (human date, ISO date) pairs; dates uniform in [first, last], formats uniform.

    The same ``seed`` (and babel version) gives the same pairs.

    Raises:
        InvalidInputError: ``n`` is not positive or exceeds the number of distinct sources.
    """
    _check_babel()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInputError(f"--n must be a positive number of pairs, got {n!r}")
    if last < first:
        raise InvalidInputError(f"last date {last} is before first date {first}")
    formats = date_formats(tuple(locales))
    if not formats:
        raise InvalidInputError(f"no unambiguous date format among locales {list(locales)}")
    span = (last - first).days + 1
    if n > span * len(formats) // 2:
        raise InvalidInputError(
            f"--n {n} is too many distinct dates for {span} days x {len(formats)} formats; "
            f"use at most {span * len(formats) // 2}"
        )
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(pairs) < n:
        date = first + dt.timedelta(days=rng.randrange(span))
        locale, pattern = formats[rng.randrange(len(formats))]
        source, target = format_pair(date, locale, pattern)
        if source not in seen:  # distinct sources: held-out splits never repeat training ones
            seen.add(source)
            pairs.append((source, target))
    return pairs


def ambiguous_sources(pairs: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """Sources that appear with more than one target (empty for a well-posed corpus)."""
    targets: dict[str, set[str]] = {}
    for source, target in pairs:
        targets.setdefault(source, set()).add(target)
    return {s: t for s, t in targets.items() if len(t) > 1}


def all_pairs(year: int, locales: Sequence[str] = LOCALES) -> list[tuple[str, str]]:
    """Every date of ``year`` in every format of ``locales`` (for checking ambiguity)."""
    day, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    formats = date_formats(tuple(locales))
    pairs = []
    while day <= end:
        pairs.extend(format_pair(day, loc, pat) for loc, pat in formats)
        day += dt.timedelta(days=1)
    return pairs


def _check_babel() -> None:
    try:
        import babel  # noqa: F401
    except ImportError:
        raise InvalidInputError(
            "the dates generator needs babel; install it with `pip install babel==2.18.0`"
        ) from None
