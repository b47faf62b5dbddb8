"""s1-broad: S1 on 47 industries, walk-forward 1970–2018, planned as its docstring says."""

from __future__ import annotations

import collections

import pandas as pd
import pytest

from dynafolio.experiments.tasks import build_tasks
from dynafolio.studies import compose_config
from dynafolio.studies.s1_broad import STRESS_WINDOWS


def test_s1_broad_is_48_years_out_of_sample_through_four_crises():
    context = compose_config("s1-broad").context
    prices = context.prepared.prices
    assert prices.shape[1] == 47 and context.config.backtest.risk_free == "ff_factors"
    folds = context.folds
    assert len(folds) == 25 and folds[0].test_dates[0] == pd.Timestamp("1970-01-02")
    assert folds[-1].test_dates[-1] >= pd.Timestamp("2018-12-28")
    assert all(len(f.train_dates) == 520 for f in folds)  # a rolling ten-year window
    for start, end in STRESS_WINDOWS.values():  # every crisis is out of sample
        assert folds[0].test_dates[0] < pd.Timestamp(start) < pd.Timestamp(end) < prices.index[-1]


@pytest.mark.slow
def test_s1_broad_fits_each_forecaster_once_per_block():
    context = compose_config("s1-broad").context
    counts = collections.Counter((t.kind, t.stream) for t in build_tasks(context))
    # One LSTM fit per block and seed shared by LSTM-only and the hybrids' test-time scores,
    # four for the hybrids' training-period scores: 375 fits, 1,050 backtests.
    assert counts[("stream", "test")] == 25 * 3
    assert counts[("stream", "train")] == 25 * 3 * 4
    assert counts[("backtest", None)] == 1050
