"""Classical strategies: no look-ahead for any of them, sensible weights, fallbacks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_prices
from dynafolio.backtest import run_backtest
from dynafolio.history import MarketHistory
from dynafolio.strategies import (
    AssetClassCompositeStrategy,
    BuyAndHoldStrategy,
    EqualWeightStrategy,
    HERCStrategy,
    HRPStrategy,
    InverseVolatilityStrategy,
    MaxSharpeStrategy,
    MinimumVarianceStrategy,
)
from dynafolio.strategies.base import Strategy

CLASSES = {
    "A0": "stocks",
    "A1": "stocks",
    "A2": "bonds",
    "A3": "gold",
    "A4": "crypto",
    "A5": "crypto",
}


def all_strategies() -> list[Strategy]:
    estimated = [
        InverseVolatilityStrategy,
        MinimumVarianceStrategy,
        MaxSharpeStrategy,
        HRPStrategy,
        HERCStrategy,
    ]
    return [
        EqualWeightStrategy(),
        BuyAndHoldStrategy("A0"),
        AssetClassCompositeStrategy(CLASSES),
        *[cls(estimation="rolling", window=30, min_periods=10) for cls in estimated],
        *[cls(estimation="expanding", window=None, min_periods=10) for cls in estimated],
        *[cls(estimation="static", window=None, min_periods=10) for cls in estimated],
    ]


STRATEGIES = all_strategies()


@pytest.mark.parametrize("index", range(len(STRATEGIES)), ids=[s.name for s in STRATEGIES])
@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 1000), cut=st.integers(0, 14), scale=st.floats(0.5, 2.0))
def test_changing_prices_after_t_never_changes_weights_up_to_t(index, seed, cut, scale):
    strategy_a, strategy_b = all_strategies()[index], all_strategies()[index]
    prices = make_prices(n_periods=80, seed=seed, late=20)
    start = prices.index[60]
    t = prices.index[59 + cut]
    perturbed = prices.copy()
    rng = np.random.default_rng(seed + 1)
    after = perturbed.index > t
    perturbed.loc[after] = perturbed.loc[after] * rng.uniform(0.5, 1.5, (after.sum(), 6)) * scale
    original = run_backtest(strategy_a, prices, start).weights.loc[:t]
    changed = run_backtest(strategy_b, perturbed, start).weights.loc[:t]
    pd.testing.assert_frame_equal(original, changed)


class _PeeksAtTomorrow(Strategy):
    """A deliberately leaky strategy: it reads a global copy of the full data."""

    label = "leaky"

    def __init__(self, full: pd.DataFrame) -> None:
        self.full = full

    def weights(self, history: MarketHistory) -> pd.Series:
        later = self.full.loc[self.full.index > history.date].iloc[:1]
        best = (later.iloc[0] / history.prices.iloc[-1]).where(history.available).idxmax()
        return pd.Series({best: 1.0})


def test_the_look_ahead_check_catches_a_leaky_strategy():
    prices = make_prices(n_periods=80, seed=3, late=0)
    perturbed = prices.copy()
    t = prices.index[65]
    perturbed.loc[perturbed.index > t, "A2"] *= 3.0  # make A2 tomorrow's winner
    original = run_backtest(_PeeksAtTomorrow(prices), prices, prices.index[60]).weights.loc[:t]
    changed = run_backtest(_PeeksAtTomorrow(perturbed), perturbed, prices.index[60]).weights.loc[:t]
    assert not original.equals(changed)


@pytest.mark.parametrize("strategy", all_strategies(), ids=lambda s: s.name)
def test_weights_are_long_only_fully_invested_and_deterministic(strategy):
    prices = make_prices(n_periods=90, seed=7, late=40)
    first = run_backtest(strategy, prices, prices.index[60])
    again = run_backtest(type(strategy)(**vars_of(strategy)), prices, prices.index[60])
    rebalanced = first.weights[first.rebalanced]
    assert (rebalanced.to_numpy() >= -1e-9).all()
    np.testing.assert_allclose(rebalanced.sum(axis=1), 1.0, atol=1e-6)
    pd.testing.assert_frame_equal(first.weights, again.weights)


def vars_of(strategy: Strategy) -> dict:
    return {k: v for k, v in vars(strategy).items() if not k.endswith("_")}


def test_asset_class_composite_splits_equally_by_class():
    prices = make_prices(n_periods=50, seed=1, late=0)
    history = MarketHistory(prices, prices.pct_change(fill_method=None))
    weights = AssetClassCompositeStrategy(CLASSES).fit(history).weights(history)
    # Four classes at 25% each; stocks and crypto split theirs in two.
    expected = {"A0": 0.125, "A1": 0.125, "A2": 0.25, "A3": 0.25, "A4": 0.125, "A5": 0.125}
    assert weights.to_dict() == pytest.approx(expected)


def test_static_estimate_ignores_the_test_period():
    prices = make_prices(n_periods=100, seed=2, late=0)
    history_train = MarketHistory(prices.iloc[:60], prices.pct_change(fill_method=None).iloc[:60])
    fitted = MinimumVarianceStrategy(estimation="static", window=None).fit(history_train)
    full = MarketHistory(prices, prices.pct_change(fill_method=None))
    pd.testing.assert_series_equal(fitted.weights(full), fitted.static_weights_, check_names=False)


def test_max_sharpe_falls_back_to_min_variance_when_every_asset_loses():
    rng = np.random.default_rng(0)
    returns = rng.normal(-0.01, 0.02, size=(80, 4))
    prices = pd.DataFrame(
        100 * np.exp(np.cumsum(returns, axis=0)),
        index=pd.date_range("2020-01-03", periods=80, freq="W-FRI"),
        columns=["A", "B", "C", "D"],
    )
    history = MarketHistory(prices, prices.pct_change(fill_method=None))
    mvo = MaxSharpeStrategy(estimation="rolling", window=52).fit(history)
    weights = mvo.weights(history)
    minvar = MinimumVarianceStrategy(estimation="rolling", window=52).fit(history).weights(history)
    pd.testing.assert_series_equal(weights, minvar)
    assert mvo.n_fallbacks_ == 1
    assert "fell back to minimum variance" in mvo.report_notes()[0]


def test_max_sharpe_prefers_the_better_asset():
    rng = np.random.default_rng(1)
    returns = rng.normal(0.0, 0.02, size=(104, 3))
    returns[:, 0] += 0.01  # same risk, much higher mean
    prices = pd.DataFrame(
        100 * np.exp(np.cumsum(returns, axis=0)),
        index=pd.date_range("2020-01-03", periods=104, freq="W-FRI"),
        columns=["good", "b", "c"],
    )
    history = MarketHistory(prices, prices.pct_change(fill_method=None))
    weights = MaxSharpeStrategy(window=104).fit(history).weights(history)
    assert weights.idxmax() == "good"
    assert weights["good"] > 0.5


def test_inverse_volatility_matches_closed_form():
    prices = make_prices(n_periods=60, seed=4, late=0)
    history = MarketHistory(prices, prices.pct_change(fill_method=None))
    weights = InverseVolatilityStrategy(window=52).fit(history).weights(history)
    vol = history.returns.iloc[-52:].std()
    expected = (1 / vol) / (1 / vol).sum()
    np.testing.assert_allclose(weights.to_numpy(), expected.to_numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "cls",
    [
        InverseVolatilityStrategy,
        MinimumVarianceStrategy,
        MaxSharpeStrategy,
        HRPStrategy,
        HERCStrategy,
    ],
)
def test_an_asset_with_a_stale_price_sits_the_estimate_out(cls):
    prices = make_prices(n_periods=160, n_assets=4, late=0)
    prices.iloc[:120, 2] = 50.0  # a quote that did not move for 120 weeks
    result = run_backtest(
        cls(estimation="rolling", window=30, min_periods=10), prices, prices.index[100]
    )
    first = result.weights.iloc[0]
    assert first["A2"] == 0.0 and first.sum() == pytest.approx(1.0)
    assert result.weights.iloc[-1]["A2"] > 0.0  # once it moves again it is estimated
