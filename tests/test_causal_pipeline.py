"""No look-ahead from the raw file: perturb the raw future, check every past weight.

The probe writes daily raw prices to a CSV, runs the same path a CLI run takes (read the file →
clean → resample → split → build → fit → weights, through ``load_prices`` and
``run_experiment``) for one strategy of every kind, then perturbs the *raw* prices after a cut
date ``t`` — new price levels, a 60-day gap, NaN runs in several assets, a file that simply
ends — and checks that every weight decided on or before ``t`` is bit-identical.

A deliberately leaky preparation (the old rule that dated a listing from the last long gap
anywhere in the sample) is caught by the same probe, so the probe can fail.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import conftest
from conftest import TINY_PPO
from dynafolio import features
from dynafolio.cli import app
from dynafolio.experiments.config import validate_config
from dynafolio.experiments.plan import load_prices
from dynafolio.model_inputs import S2_FEATURES
from dynafolio.studies import run_experiment

CLASSES = {"S1": "stocks", "S2": "stocks", "S3": "bonds", "C1": "crypto", "C2": "crypto"}
TEST_START = "2021-03-05"
# Weekly decision dates inside the test period, after walk-forward refits have happened.
CUTS = ("2021-05-14", "2021-08-20")

TINY_LSTM = {**conftest.TINY_LSTM, "batch_size": 64}
TINY_STACKED = {"lookback": 6, "units": [4], "epochs": 2, "batch_size": 64}

STRATEGIES = [
    {"kind": "equal_weight"},
    {"kind": "buy_and_hold", "asset": "S1"},
    {"kind": "asset_class_composite"},
    *[
        {"kind": kind, "estimation": "rolling", "window": 30, "min_periods": 10}
        for kind in ("inverse_volatility", "minimum_variance", "max_sharpe", "hrp", "herc")
    ],
    {"kind": "hrp", "estimation": "static", "window": None, "min_periods": 10},
    {"kind": "momentum", "lookback": 20, "skip": 2, "top": 3},
    {"kind": "random_topk", "k": 2, "hold": 3},
    {"kind": "minimum_variance", "estimation": "expanding", "window": None, "min_periods": 10},
    {
        "kind": "forecast_topk",
        "k": 2,
        "retrain_every": 6,
        "forecaster": {"model": "univariate_lstm", "params": TINY_LSTM},
    },
    *[
        {
            "kind": "forecast_signal",
            "allocation": allocation,
            "retrain_every": 6,
            "train_window": 80,
            "universe": ["S1", "S2", "S3", "C1"],
            "forecaster": {"model": "stacked_lstm", "params": TINY_STACKED},
        }
        for allocation in ("clip", "inverse_vol", "mean_variance", "hrp")
    ],
    {
        "kind": "forecast_signal",
        "name": "LSTM + features",
        "allocation": "clip",
        "retrain_every": 6,
        "forecaster": {
            "model": "stacked_lstm",
            "params": {**TINY_STACKED, "features": list(S2_FEATURES), "market_asset": "S1"},
        },
    },
    {
        "kind": "price_rule",
        "retrain_every": 8,
        "universe": ["S1", "S2", "S3"],
        "constraints": {"long_only": False, "max_position": 0.34},
        "forecaster": {
            "model": "price_lstm",
            "params": {"lookback": 6, "hidden": 4, "n_layers": 1, "epochs": 2},
        },
    },
    {
        "kind": "price_rule",
        "name": "Price rule per stock, window-scaled",
        "retrain_every": 8,
        "universe": ["S1", "S2", "C1"],
        "constraints": {"long_only": False, "max_position": 0.34},
        "forecaster": {
            "model": "price_lstm_per_stock",
            "params": {"lookback": 6, "hidden": 4, "n_layers": 2, "epochs": 2, "scaling": "window"},
        },
    },
    {
        "kind": "e2e_drawdown",
        "lam": 10.0,
        "retrain_every": 10,
        "params": {"lookback": 6, "hidden": 4, "epochs": 2},
    },
    {"kind": "ppo_topk", "k": 2, "lookback": 4, "ppo": TINY_PPO, "score_initial_window": 40},
    {
        "kind": "ppo_topk",
        "k": 2,
        "lookback": 4,
        "ppo": TINY_PPO,
        "score_initial_window": 40,
        "score_refit_every": 20,
        "forecaster": {"model": "univariate_lstm", "params": TINY_LSTM},
    },
]


def raw_daily_prices(seed: int = 0) -> pd.DataFrame:
    """Daily closes: stocks on weekdays only, crypto every day, one late listing (L1)."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2019-01-01", "2021-12-31", freq="D", name="date")
    assets = ["S1", "S2", "S3", "C1", "C2", "L1"]
    returns = rng.normal(0.0004, 0.015, size=(len(index), len(assets)))
    prices = pd.DataFrame(100 * np.exp(np.cumsum(returns, axis=0)), index=index, columns=assets)
    weekend = index.day_of_week >= 5
    for stock in ("S1", "S2", "S3", "L1"):
        prices.loc[weekend, stock] = np.nan
    prices.loc[:"2019-09-30", "L1"] = np.nan
    return prices


def perturb(raw: pd.DataFrame, t: pd.Timestamp, how: str, seed: int = 1) -> pd.DataFrame:
    """A raw file that agrees with ``raw`` up to ``t`` and differs after it."""
    rng = np.random.default_rng(seed)
    out = raw.copy()
    after = out.index > t
    if how == "rescale":
        out.loc[after] = out.loc[after] * rng.uniform(0.5, 1.6, size=(int(after.sum()), 6))
    elif how == "long-gap":  # a 60-day halt right after t, then prices resume elsewhere
        halt = after & (out.index <= t + pd.Timedelta(days=60))
        out.loc[halt, "C1"] = np.nan
        out.loc[after & ~halt, "C1"] *= 3.0
    elif how == "nan-runs":  # stretches of missing prices in several assets
        for asset, days in (("S2", 40), ("C2", 9), ("L1", 120), ("S3", 3)):
            start = t + pd.Timedelta(days=int(rng.integers(1, 10)))
            out.loc[start : start + pd.Timedelta(days=days), asset] = np.nan
    elif how == "file-ends":  # the sample stops three days after t
        out = out.loc[: t + pd.Timedelta(days=3)]
    else:  # pragma: no cover
        raise AssertionError(how)
    return out


def run_on(raw: pd.DataFrame, tmp_path, name: str, strategies=STRATEGIES, split=None):
    path = tmp_path / f"{name}.csv"
    raw.to_csv(path, index_label="date")
    config = validate_config(
        {
            "name": "probe",
            "data": {"path": str(path), "frequency": "W"},
            "split": split or {"test_start": TEST_START, "train_fraction": None},
            "strategies": strategies,
            "n_seeds": 1,
        }
    )
    prepared = load_prices(config)  # exactly what the CLI does with --data / data.path
    prepared = dataclasses.replace(prepared, asset_classes=CLASSES)
    return run_experiment(config, prepared=prepared)


def weights_up_to(result, t: pd.Timestamp) -> dict[str, pd.DataFrame]:
    return {runs.name: runs.first.weights.loc[:t] for runs in result.strategies}


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return run_on(raw_daily_prices(), tmp_path_factory.mktemp("original"), "original")


HOWS = ("rescale", "long-gap", "nan-runs", "file-ends")
# Each perturbation at one cut in the fast suite; the other cut of each is marked slow.
CASES = [
    pytest.param(how, cut, marks=() if (i + j) % 2 == 0 else pytest.mark.slow)
    for i, how in enumerate(HOWS)
    for j, cut in enumerate(CUTS)
]


@pytest.mark.parametrize(("how", "cut"), CASES)
def test_perturbing_the_raw_future_never_changes_a_past_weight(original, tmp_path, how, cut):
    t = pd.Timestamp(cut)
    changed = run_on(perturb(raw_daily_prices(), t, how), tmp_path, how)
    before, after = weights_up_to(original, t), weights_up_to(changed, t)
    assert set(before) == set(after)
    assert len(before) == len(STRATEGIES)
    for name, frame in before.items():
        assert len(frame) >= 10, name  # the cut lies well inside the test period
        pd.testing.assert_frame_equal(frame, after[name], obj=name)


# A walk-forward of 15-week blocks from TEST_START: the second block's first test date is
# 2021-06-18, so its models are fitted, and its first decision taken, on 2021-06-11.
WALK_FORWARD = {"walk_forward": {"first_test": TEST_START, "step": 15}}
FOLD_OPENING = pd.Timestamp("2021-06-11")


@pytest.mark.parametrize("how", ["rescale", pytest.param("long-gap", marks=pytest.mark.slow)])
def test_perturbing_prices_after_a_fold_starts_never_changes_an_earlier_decision(tmp_path, how):
    """Across a walk-forward boundary: every strategy kind is refit before the second block
    on the data up to its opening decision; nothing after that date may change any weight
    decided up to it — the first block's, or the refit models' first."""
    original = run_on(raw_daily_prices(), tmp_path, "walk", split=WALK_FORWARD)
    assert len(original.folds) == 3
    assert original.folds[1].index[original.folds[1].test.start - 1] == FOLD_OPENING
    changed = run_on(
        perturb(raw_daily_prices(), FOLD_OPENING, how), tmp_path, f"walk-{how}",
        split=WALK_FORWARD,
    )  # fmt: skip
    before, after = weights_up_to(original, FOLD_OPENING), weights_up_to(changed, FOLD_OPENING)
    assert len(before) == len(STRATEGIES)
    for name, frame in before.items():
        assert frame.index[-1] == FOLD_OPENING, name
        pd.testing.assert_frame_equal(frame, after[name], obj=name)


def test_every_strategy_kind_is_probed():
    from dynafolio.strategies.kinds import STRATEGY_SPECS

    assert {s["kind"] for s in STRATEGIES} == set(STRATEGY_SPECS)


def _leaky_clean(prices: pd.DataFrame, max_gap: int = 5) -> pd.DataFrame:
    """The old, non-causal rule: an asset is listed after the last long gap in the sample."""
    out = prices.astype(float).ffill(limit=max_gap)
    for column in prices.columns:
        valid = np.flatnonzero(prices[column].notna().to_numpy())
        gaps = np.flatnonzero(np.diff(valid) - 1 > 30)
        if gaps.size:
            out.iloc[: valid[gaps[-1] + 1], out.columns.get_loc(column)] = np.nan
    return out


def test_the_probe_catches_a_leaky_preparation(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "clean_prices", _leaky_clean)
    t = pd.Timestamp(CUTS[0])
    simple = [{"kind": "equal_weight"}]
    base = run_on(raw_daily_prices(), tmp_path, "base", simple)
    gap = run_on(perturb(raw_daily_prices(), t, "long-gap"), tmp_path, "gap", simple)
    before, after = weights_up_to(base, t), weights_up_to(gap, t)
    assert not before["Equal weight"].equals(after["Equal weight"])
    # C1 vanished from its whole past: the bug this probe exists to catch.
    assert (before["Equal weight"]["C1"] > 0).all() and (after["Equal weight"]["C1"] == 0).all()


def test_the_cli_writes_the_same_past_weights_after_a_raw_perturbation(tmp_path):
    """The same probe through ``dynafolio run --data FILE --config`` and its weights files."""
    t = pd.Timestamp(CUTS[1])
    config = tmp_path / "probe.yaml"
    config.write_text(
        f"split: {{test_start: {TEST_START}, train_fraction: null}}\n"
        "n_seeds: 1\n"
        "strategies:\n"
        "  - kind: equal_weight\n"
        "  - {kind: hrp, estimation: rolling, window: 30, min_periods: 10}\n"
        "  - {kind: max_sharpe, estimation: expanding, window: null, min_periods: 10}\n"
    )
    written = {}
    for name, raw in (
        ("original", raw_daily_prices()),
        ("perturbed", perturb(raw_daily_prices(), t, "long-gap")),
    ):
        data = tmp_path / f"{name}.csv"
        raw.to_csv(data, index_label="date")
        out = tmp_path / name
        result = CliRunner().invoke(
            app, ["run", "--config", str(config), "--data", str(data), "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        (run_dir,) = out.iterdir()
        written[name] = {
            path.name: pd.read_csv(path, index_col="date", parse_dates=True).loc[:t]
            for path in sorted((run_dir / "weights").iterdir())
        }
    assert len(written["original"]) == 3
    for file, frame in written["original"].items():
        pd.testing.assert_frame_equal(frame, written["perturbed"][file], obj=file)
