"""CSV series for forecasting: no look-ahead anywhere, transforms, gaps, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.data.series import (
    PACKAGED,
    ForecastData,
    Scaler,
    SeriesConfig,
    invert_transform,
    load_series,
    read_series_csv,
    transform_levels,
)
from rnnkit.errors import InvalidInputError
from rnnkit.tasks.baselines import LinearAR

N, W, H = 120, 10, 3


def _series(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(N)
    y = 50 + 0.2 * t + 3 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, N)
    x = rng.normal(0, 1, (N, 2))
    return y, x


def _data(y, x, transform, fill="interpolate") -> ForecastData:
    config = SeriesConfig(
        target="y", window=W, horizon=H, features=("a", "b"), transform=transform, fill=fill
    )
    return ForecastData(y, x, config=config)


def _views(data: ForecastData, span: str) -> tuple[np.ndarray, np.ndarray]:
    origins = data.origins(span)
    return data.inputs(origins), data.targets(span, origins)


# -- leakage ---------------------------------------------------------------------------------
@pytest.mark.parametrize("transform", ["levels", "diff", "logret"])
def test_nothing_fitted_or_windowed_for_training_sees_later_rows(transform):
    """Huge values after the training span change neither the scaler nor any training window.

    A gap straddles the train/validation boundary, so a two-sided interpolation of the whole
    series would pull validation values into the last training rows; this test fails then, and
    fails if any scaling statistic, training input or training target uses a later row.
    """
    y, x = _series()
    clean = _data(y.copy(), x.copy(), transform)
    start_val, start_test = clean.spans["val"][0], clean.spans["test"][0]
    y[start_val - 2 : start_val + 2] = np.nan  # gap across the boundary
    x[start_val - 1 : start_val + 1, 0] = np.nan
    gapped = _data(y.copy(), x.copy(), transform)

    poisoned_y, poisoned_x = y.copy(), x.copy()
    poisoned_y[start_val + 2 :] = 1e9 + np.arange(N - start_val - 2)
    poisoned_x[start_val + 1 :] = -1e9
    poisoned = _data(poisoned_y, poisoned_x, transform)

    np.testing.assert_array_equal(poisoned.scaler.mean, gapped.scaler.mean)
    np.testing.assert_array_equal(poisoned.scaler.std, gapped.scaler.std)
    for a, b in zip(_views(poisoned, "train"), _views(gapped, "train")):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        LinearAR().fit(poisoned).coef, LinearAR().fit(gapped).coef
    )  # the AR baseline is fitted on the training span only
    # the poisoned values are really in the data (the test is not vacuous)
    assert np.abs(poisoned.inputs(poisoned.origins("test"))).max() > 1e3

    # And the validation span does not see the test span.
    only_test = y.copy()
    only_test[start_test:] = 1e9
    test_poisoned = _data(only_test, x.copy(), transform)
    for a, b in zip(_views(test_poisoned, "val"), _views(gapped, "val")):
        np.testing.assert_array_equal(a, b)


def test_scaler_equals_statistics_of_training_rows_only():
    y, x = _series()
    data = _data(y, x, "diff")
    end = data.spans["train"][1]
    z = np.diff(y[:end])
    np.testing.assert_allclose(data.scaler.mean, [z.mean(), x[1:end, 0].mean(), x[1:end, 1].mean()])
    np.testing.assert_allclose(data.scaler.std, [z.std(), x[1:end, 0].std(), x[1:end, 1].std()])


@pytest.mark.parametrize("fill", ["interpolate", "forward"])
def test_each_window_sees_only_rows_up_to_its_origin(fill):
    """Changing rows after an origin ``T`` never changes that origin's inputs (gaps included)."""
    y, x = _series(1)
    y[90:95] = np.nan  # a gap inside the test span, filled differently from each origin
    base = _data(y, x, "levels", fill)
    for origin in [88, 90, 92, 94, 96, 100]:
        later = y.copy()
        later[origin + 1 :] = 1e6
        changed = _data(later, x, "levels", fill)
        o = np.array([origin])
        np.testing.assert_array_equal(changed.inputs(o), base.inputs(o))
        np.testing.assert_array_equal(changed.anchors(o), base.anchors(o))
    # the gap is filled from what was known: from origin 92, rows 90-92 carry row 89 forward
    o = np.array([92])
    known = base.raw_inputs(o)[0, -3:, 0]
    np.testing.assert_array_equal(known, [y[89]] * 3)
    # from origin 96 (after the gap closed) the gap is interpolated between rows 89 and 95
    o = np.array([96])
    filled = base.raw_inputs(o)[0, -7:-2, 0]
    expected = np.interp(np.arange(90, 95), [89, 95], [y[89], y[95]])
    if fill == "forward":
        expected = np.full(5, y[89])
    np.testing.assert_allclose(filled, expected)


def test_origins_keep_all_targets_inside_their_span():
    y, x = _series()
    data = _data(y, x, "diff")
    for span, (start, end) in data.spans.items():
        origins = data.origins(span)
        assert origins.min() + 1 >= start and origins.max() + H <= end - 1
        assert origins.min() - W + 1 - 1 >= 0  # one extra row for the first difference
    # every origin of the test span is used: T+1 from the span's first row to T+H at its last
    test_start, test_end = data.spans["test"]
    assert data.origins("test")[0] == test_start - 1
    assert data.origins("test")[-1] == test_end - 1 - H


# -- transforms ------------------------------------------------------------------------------
@pytest.mark.parametrize("transform", ["levels", "diff", "logret"])
def test_targets_return_to_original_units(transform):
    y, x = _series()
    data = _data(y, x, transform)
    origins = data.origins("test")
    back = data.to_levels(data.targets("test", origins), origins)
    np.testing.assert_allclose(back, data.actuals(origins), rtol=1e-12)


def test_transform_reference_values():
    levels = np.array([[100.0, 110.0, 99.0]])
    np.testing.assert_allclose(transform_levels(levels, "diff"), [[10.0, -11.0]])
    np.testing.assert_allclose(
        transform_levels(levels, "logret"), [[np.log(1.1), np.log(0.9)]], rtol=1e-15
    )
    np.testing.assert_allclose(
        invert_transform(np.array([[10.0, -11.0]]), np.array([100.0]), "diff"), [[110.0, 99.0]]
    )
    np.testing.assert_allclose(
        invert_transform(np.log([[1.1, 0.9]]), np.array([100.0]), "logret"), [[110.0, 99.0]]
    )


def test_scaler_keeps_constant_channels_finite():
    scaler = Scaler.fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_array_equal(scaler.mean, [2.0, 5.0])
    np.testing.assert_array_equal(scaler.std, [1.0, 1.0])
    again = Scaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(again.mean, scaler.mean)
    np.testing.assert_array_equal(again.std, scaler.std)


# -- reading CSV files -----------------------------------------------------------------------
def _write(tmp_path, text: str, name: str = "s.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_csv_values_dates_and_missing(tmp_path):
    path = _write(tmp_path, "day,v,w\n2020-01-01,1.5,3\n2020-01-02,,4\n2020-01-03,NA,5\n")
    table = read_series_csv(path, "v", ["w"], "day")
    np.testing.assert_array_equal(table.values[:, 1], [3, 4, 5])
    assert table.values[0, 0] == 1.5 and np.isnan(table.values[1:, 0]).all()
    assert table.date_strings() == ["2020-01-01", "2020-01-02", "2020-01-03"]
    assert list(table.lines) == [2, 3, 4]


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("a,b\n1,2\n", {"target": "c"}, r"no column 'c'; its columns are a, b"),
        ("a\n1\n2\nx7\n", {"target": "a"}, r"line 4: column 'a' has 'x7', not a number"),
        (
            "d,a\n2020-01-02,1\n2020-01-01,2\n",
            {"target": "a", "date_column": "d"},
            r"line 3: date 2020-01-01 comes before line 2 .*sort the rows",
        ),
        (
            "d,a\n2020-01-01,1\n2020-01-02,2\n2020-01-02,3\n",
            {"target": "a", "date_column": "d"},
            r"line 4: date 2020-01-02 duplicates line 3",
        ),
        (
            "d,a\n2020-01-01,1\nlater,2\n",
            {"target": "a", "date_column": "d"},
            r"line 3: date 'later' does not match",
        ),
        ("", {"target": "a"}, r"is empty"),
    ],
)
def test_read_csv_refuses_bad_input_naming_the_line(tmp_path, text, kwargs, match):
    path = _write(tmp_path, text)
    with pytest.raises(InvalidInputError, match=match):
        read_series_csv(path, **kwargs)


def test_fill_none_names_the_missing_rows(tmp_path):
    # one column: a missing value is a blank line, and it keeps its line number
    rows = "\n".join(["v"] + [("" if i in (3, 7) else str(i)) for i in range(40)])
    path = _write(tmp_path, rows + "\n")
    config = SeriesConfig(target="v", window=4, horizon=2, fill="none")
    with pytest.raises(InvalidInputError, match=r"2 missing value\(s\) at lines 5, 9; pass --fill"):
        load_series(config, path)


def test_leading_gap_cannot_be_filled(tmp_path):
    path = _write(tmp_path, "v\nNA\n" + "\n".join(str(i) for i in range(40)) + "\n")
    config = SeriesConfig(target="v", window=4, horizon=2)
    with pytest.raises(InvalidInputError, match=r"missing at line 2 before its first value"):
        load_series(config, path)


def test_short_series_is_refused_with_the_sizes():
    config = SeriesConfig(target="y", window=8, horizon=3, transform="diff")
    with pytest.raises(InvalidInputError, match=r"11 rows, shorter than --window 8 \+ --horizon 3"):
        ForecastData(np.arange(1.0, 12.0), config=config)
    # long enough overall but the test span cannot hold one example
    with pytest.raises(InvalidInputError, match=r"test span .* holds no complete example"):
        config = SeriesConfig("y", window=8, horizon=3, test_fraction=0.1)
        ForecastData(np.arange(1.0, 25.0), config=config)


def test_logret_needs_positive_values():
    y = np.linspace(1, 10, 60)
    y[30] = 0.0
    with pytest.raises(InvalidInputError, match=r"line 32: y is 0; --transform logret"):
        ForecastData(y, config=SeriesConfig("y", window=4, horizon=2, transform="logret"))


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="window must be a positive integer"):
        SeriesConfig("y", window=0, horizon=1)
    with pytest.raises(ValueError, match="transform must be one of"):
        SeriesConfig("y", window=3, horizon=1, transform="log")
    with pytest.raises(ValueError, match="also listed in features"):
        SeriesConfig("y", window=3, horizon=1, features=("y",))


# -- packaged data ---------------------------------------------------------------------------
def test_packaged_co2_has_its_real_gaps():
    spec = PACKAGED["co2"]
    table = read_series_csv(spec.path(), spec.target, (), spec.date_column, spec.date_format)
    assert len(table) == 2284
    assert int(np.isnan(table.values[:, 0]).sum()) == 59
    assert table.date_strings()[0] == "1958-03-29"
