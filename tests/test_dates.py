"""The dates corpus: eight locales, ISO targets, no source with two readings, seeded output."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from rnnkit.cli.main import main
from rnnkit.data.dates import (
    LOCALES,
    all_pairs,
    ambiguous_sources,
    date_formats,
    format_pair,
    generate_dates,
    is_unambiguous,
)
from rnnkit.errors import InvalidInputError

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def test_known_dates_in_known_formats():
    day = dt.date(2023, 3, 7)
    assert format_pair(day, "en_US", "MMMM d, y") == ("March 7, 2023", "2023-03-07")
    assert format_pair(day, "de_DE", "dd.MM.y") == ("07.03.2023", "2023-03-07")
    assert format_pair(day, "ja_JP", "y年M月d日") == ("2023年3月7日", "2023-03-07")
    assert format_pair(day, "pt_BR", "d 'de' MMMM 'de' y")[0] == "7 de março de 2023"


def test_format_filter():
    assert is_unambiguous("dd/MM/y") and is_unambiguous("y/MM/dd")
    assert is_unambiguous("EEEE, MMMM d, y")  # month name first is fine
    assert not is_unambiguous("M/d/yy")  # two-digit year
    assert not is_unambiguous("M/d/y")  # numeric month before the day
    assert not is_unambiguous("dd.MM.yy")
    formats = date_formats()
    assert {locale for locale, _ in formats} == set(LOCALES) and len(LOCALES) == 8
    assert all(is_unambiguous(pattern) for _, pattern in formats)


@pytest.mark.parametrize("year", [2023, 2024])  # a common and a leap year: every day, format
def test_no_source_has_two_targets(year):
    pairs = all_pairs(year)
    assert len(pairs) == len(date_formats()) * (366 if year == 2024 else 365)
    assert ambiguous_sources(pairs) == {}


def test_ambiguity_check_catches_mixed_numeric_orders():
    day = dt.date(2023, 3, 7)
    mixed = [format_pair(day, "en_US", "M/d/y"), format_pair(dt.date(2023, 7, 3), "en_GB", "d/M/y")]
    assert ambiguous_sources(mixed) == {"3/7/2023": {"2023-03-07", "2023-07-03"}}


def test_generate_is_seeded_distinct_and_correct():
    pairs = generate_dates(2000, seed=5)
    assert pairs == generate_dates(2000, seed=5)
    assert pairs != generate_dates(2000, seed=6)
    assert len({s for s, _ in pairs}) == 2000
    assert all(ISO.match(t) for _, t in pairs)
    years = [int(t[:4]) for _, t in pairs]
    assert min(years) >= 1950 and max(years) <= 2049
    # every target's year appears in its source; every locale is used
    assert all(t[:4] in s for s, t in pairs)
    assert any("年" in s for s, _ in pairs) and any(" de " in s for s, _ in pairs)
    with pytest.raises(InvalidInputError, match="positive"):
        generate_dates(0)


def test_cli_writes_tsv(capsys):
    assert main(["data", "dates", "--n", "5", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(line.count("\t") == 1 for line in lines)
    assert [tuple(line.split("\t")) for line in lines] == generate_dates(5, seed=3)
    assert main(["data", "dates", "--n", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --n must be >= 1, got 0"
