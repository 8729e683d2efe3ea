"""UEA/UCR .ts reader and per-channel standardisation."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.data.ts import Standardizer, read_ts, sktime_ts_paths
from rnnkit.errors import InvalidInputError

HEADER = "# comment\n@problemName Toy\n@univariate false\n@dimensions 2\n@equalLength false\n"
HEADER += "@classLabel true a b\n@data\n"


def write(tmp_path, body, header=HEADER, name="toy.ts"):
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return path


def test_read_multivariate_unequal_length(tmp_path):
    path = write(tmp_path, "1,2,3:4,5,6:a\n7,8:9,10:b\n")
    data = read_ts(path)
    assert data.dimensions == 2 and data.labels == ["a", "b"]
    assert data.class_labels == ["a", "b"] and data.problem_name == "Toy"
    assert data.lengths == [3, 2]
    np.testing.assert_array_equal(data.series[0], [[1, 4], [2, 5], [3, 6]])
    assert data.series[1].dtype == np.float32 and data.series[1].shape == (2, 2)


@pytest.mark.parametrize(
    "body,message",
    [
        ("1,2:3,4:a\n1,2:a\n", r"line 9 has 1 dimensions, expected 2 \(@dimensions\)"),
        ("1,2:3:a\n", r"line 8: dimensions have different lengths \[1, 2\]"),
        ("1,?:3,4:a\n", r"line 8, dimension 1: missing values"),
        ("1,x:3,4:a\n", r"line 8, dimension 1: a value is not a number"),
        ("1,2:3,4:\n", r"line 8: empty class label"),
        ("", r"no cases after @data"),
    ],
)
def test_read_bad_files(tmp_path, body, message):
    with pytest.raises(InvalidInputError, match=message):
        read_ts(write(tmp_path, body))


def test_dimension_mismatch_between_train_and_test(tmp_path):
    train = read_ts(write(tmp_path, "1,2:3,4:a\n"))
    header = HEADER.replace("@dimensions 2", "@dimensions 3")
    test = write(tmp_path, "1:2:3:a\n", header=header, name="test.ts")
    with pytest.raises(InvalidInputError, match="3 dimensions but the training file .* has 2"):
        read_ts(test, like=train)


def test_not_a_ts_file(tmp_path):
    with pytest.raises(InvalidInputError, match="no @data line"):
        read_ts(write(tmp_path, "", header="@problemName x\n"))
    with pytest.raises(InvalidInputError, match="expected an @ header line"):
        read_ts(write(tmp_path, "", header="1,2,3\n"))


def test_standardizer_is_per_channel_over_all_training_steps():
    a = np.array([[1.0, 10.0], [3.0, 10.0]])
    b = np.array([[5.0, 10.0]])
    s = Standardizer.fit([a, b])
    steps = np.concatenate([a, b])
    np.testing.assert_allclose(s.mean, steps.mean(0))
    np.testing.assert_allclose(s.std, [steps[:, 0].std(), 1.0])  # constant channel: std 1
    z = s.transform(np.concatenate([a, b]))
    np.testing.assert_allclose(z[:, 0].mean(), 0.0, atol=1e-7)
    np.testing.assert_allclose(z[:, 0].std(), 1.0, atol=1e-6)
    np.testing.assert_array_equal(z[:, 1], 0.0)
    again = Standardizer.from_json(s.to_json())
    np.testing.assert_array_equal(again.transform(b), s.transform(b))
    with pytest.raises(InvalidInputError, match="series has 3 dimensions"):
        s.transform(np.zeros((2, 3)))


@pytest.mark.parametrize(
    "name,cases,dims,classes",
    [("JapaneseVowels", (270, 370), 12, 9), ("BasicMotions", (40, 40), 6, 4)],
)
def test_sktime_datasets(name, cases, dims, classes):
    train_path, test_path = sktime_ts_paths(name)
    train = read_ts(train_path)
    test = read_ts(test_path, like=train)
    assert (len(train.series), len(test.series)) == cases
    assert train.dimensions == dims and len(set(train.labels)) == classes
    assert set(test.labels) <= set(train.labels)
