"""Chronological split and walk-forward folds."""

from __future__ import annotations

import pandas as pd
import pytest

from dynafolio.errors import DataError
from dynafolio.splits import chronological_split, walk_forward_folds

INDEX = pd.date_range("2020-01-03", periods=100, freq="W-FRI")


def test_fraction_split_is_chronological_and_disjoint():
    split = chronological_split(INDEX, 0.7)
    assert len(split.train_dates) == 70 and len(split.test_dates) == 30
    assert split.train_dates[-1] < split.test_dates[0]


def test_date_split_starts_test_on_the_given_date():
    split = chronological_split(INDEX, None, test_start="2021-01-01")
    assert split.test_dates[0] == pd.Timestamp("2021-01-01")
    assert split.train_dates[-1] == pd.Timestamp("2020-12-25")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"train_fraction": 1.5},
        {"train_fraction": None},
        {"train_fraction": None, "test_start": "2030-01-01"},
    ],
)
def test_bad_splits_are_explained(kwargs):
    with pytest.raises(DataError, match="train"):
        chronological_split(INDEX, **kwargs)


def test_rolling_folds_keep_the_window_and_step():
    folds = list(walk_forward_folds(INDEX, train_size=40, test_size=20))
    assert [f.test.start for f in folds] == [40, 60, 80]
    assert all(f.train.stop - f.train.start == 40 for f in folds)
    assert all(f.train.stop == f.test.start for f in folds)
    assert folds[-1].test.stop == 100


def test_expanding_folds_grow_from_the_start():
    folds = list(walk_forward_folds(INDEX, train_size=40, test_size=25, mode="expanding"))
    assert all(f.train.start == 0 for f in folds)
    assert [f.train.stop for f in folds] == [40, 65, 90]
    assert folds[-1].test == slice(90, 100)


def test_purge_and_embargo_leave_a_gap_before_each_test_fold():
    folds = list(walk_forward_folds(INDEX, train_size=30, test_size=10, purge=2, embargo=3))
    for fold in folds:
        assert fold.test.start - fold.train.stop == 5
        assert fold.train.stop - fold.train.start == 30
    # No test date is ever a training date of the same fold.
    for fold in folds:
        assert set(fold.train_dates).isdisjoint(fold.test_dates)


def test_walk_forward_needs_enough_data():
    with pytest.raises(DataError, match="needs more than"):
        list(walk_forward_folds(INDEX, train_size=100, test_size=5))
